import { createHash, randomBytes } from 'node:crypto';

/** A new secret: "orch_" and 32 random bytes in base64url (256 bits: a hash of it cannot be searched back). */
export const newSecret = (): string => `orch_${randomBytes(32).toString('base64url')}`;

/** What is stored of a secret (sha256, hex). A slow hash buys nothing for 256 random bits and costs every request. */
export const hashSecret = (secret: string): string => createHash('sha256').update(secret, 'utf8').digest('hex');
