/** The transport layer: preface, frames, and encrypted frames. */
export * from './errors.js';
export * from './preface.js';
export * from './frame-codec.js';
export * from './frame-socket.js';
export * from './noise-socket.js';
