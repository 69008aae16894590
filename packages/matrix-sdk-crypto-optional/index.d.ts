export * from '@matrix-org/matrix-sdk-crypto-nodejs-real';
/** Thrown when Matrix encryption is used but the native library is not installed. */
export declare class MatrixEncryptionUnavailableError extends Error {
  readonly code: 'matrix_encryption_unavailable';
}
/** Whether the real library (with its native part) was loaded. */
export declare const available: boolean;
/** Why it was not, when it was not. */
export declare const unavailableReason: string | undefined;
