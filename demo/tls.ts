/**
 * The demo's TLS: a self-signed certificate made for the run (openssl, which Prosody's Debian
 * package pulls in through ssl-cert), and certificate pinning for the demo's own XMPP clients, which
 * check the certificate by its SHA-256 fingerprint as a user does when the client asks.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import tls, { type ConnectionOptions, type TLSSocket } from 'node:tls';
import XmppTlsSocket from '@xmpp/tls/lib/Socket.js';

export interface DemoCertificate {
  /** PEM files: the certificate and its (unencrypted, mode 0600) key. */
  readonly certificate: string;
  readonly key: string;
  /** SHA-256 fingerprint, colon-separated upper-case hex as clients show it (AB:CD:...). */
  readonly fingerprint: string;
}

/** A P-256 certificate for `localhost` and 127.0.0.1, valid 30 days, in `dir`. */
export async function makeCertificate(dir: string): Promise<DemoCertificate> {
  const certificate = path.join(dir, 'localhost.crt');
  const key = path.join(dir, 'localhost.key');
  await new Promise<void>((resolve, reject) => {
    execFile(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '30',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout',
        key,
        '-out',
        certificate,
      ],
      { timeout: 20_000 },
      (err, _stdout, stderr) =>
        err
          ? reject(new Error(`openssl could not make the demo's certificate: ${stderr || err.message}`))
          : resolve(),
    );
  });
  return { certificate, key, fingerprint: new X509Certificate(readFileSync(certificate)).fingerprint256 };
}

/** Pins per server port: a TLS connection of an @xmpp/client to a pinned port checks the fingerprint. */
const pins = new Map<number, string>();
let installed = false;

/**
 * From now on, @xmpp/client connections (direct TLS and STARTTLS) to 127.0.0.1:`port` accept the
 * server's certificate only when its SHA-256 fingerprint is `fingerprint`, whoever signed it, and
 * fail with an error naming both fingerprints otherwise. Connections to other ports are untouched.
 * Returns the function that removes the pin.
 */
export function pinCertificate(port: number, fingerprint: string): () => void {
  install();
  pins.set(port, fingerprint.toUpperCase());
  return () => {
    if (pins.get(port) === fingerprint.toUpperCase()) pins.delete(port);
  };
}

type Connect = (options: ConnectionOptions) => void;

function install(): void {
  if (installed) return;
  installed = true;
  const proto = XmppTlsSocket.prototype as unknown as {
    connect: Connect;
    _attachSocket(socket: TLSSocket): void;
    emit(event: string, ...args: unknown[]): boolean;
    socket: TLSSocket | null;
  };
  const original = proto.connect;
  proto.connect = function (this: typeof proto, options: ConnectionOptions) {
    const port = options.port ?? (options.socket as { remotePort?: number } | undefined)?.remotePort;
    const pin = port === undefined ? undefined : pins.get(port);
    if (pin === undefined) {
      original.call(this, options);
      return;
    }
    // The chain is not checked (the certificate is self-signed); the fingerprint is, before the
    // client sees the socket: a mismatch ends the connection with an error, nothing is sent.
    const socket = tls.connect({ ...options, rejectUnauthorized: false });
    let attached = false;
    socket.once('secureConnect', () => {
      const seen = socket.getPeerCertificate().fingerprint256;
      if (seen !== pin) {
        socket.destroy();
        this.emit(
          'error',
          new Error(`the server's certificate has SHA-256 fingerprint ${seen}, not the pinned ${pin}`),
        );
        return;
      }
      attached = true;
      this._attachSocket(socket);
      this.emit('connect');
    });
    socket.once('error', (err) => {
      if (!attached) this.emit('error', err);
    });
  };
}
