import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import type { ValidationLimits } from '../domain/plan-input';
import { apiSecurityEnv, apiSecurityFrom, type ApiSecurity } from './api-security';
import { authEnv, authFrom, type AuthConfig } from './auth';
import { PLAN_LIMITS } from '../domain/plan-input.schema';
import { DEFAULT_POOLS, loadPoolsSource, poolsSchema, type PoolDefinition } from './pools';
import { qemuDriverConfigSchema, qemuDriverEnv, type QemuDriverConfig } from './qemu-driver';
import { containerDriverConfigFrom, containerDriverEnv, type ContainerDriverConfig } from './container-driver';
import { DEFAULT_IMAGES, loadImages, poolImageProblems, type ImageDefinition } from './images';
import { DEFAULT_BUNDLE_LIMITS, type BundleLimits } from '../infra/bundle/bundle-store';

/**
 * Limits on what one submission may hold (the domain's ValidationLimits) and the defaults it gets.
 * maxTestsPerPlan 50,000: a large monorepo's plan fits, and 10,000 are accepted in one call.
 * maxScriptBytes 256 KiB: a script drives a test, its data belongs in the image or artifacts.
 * maxTimeoutSeconds: 24 hours.
 */
export interface SubmissionLimits extends ValidationLimits {
  /** Used when a test gives no timeoutSeconds: 10 minutes. */
  defaultTimeoutSeconds: number;
  /** Retries after an environment fault when a test gives no maxRetries. */
  defaultMaxRetries: number;
}

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  imageDir: string;
  /** The bundle store (BUNDLE_DIR, default DATA_DIR/bundles): shared by the API that takes uploads and the workers that use them. */
  bundleDir: string;
  /** What one upload to POST /bundles may hold. */
  bundleLimits: BundleLimits;
  /** undefined: the embedded PGlite database in DATA_DIR/pglite. */
  databaseUrl?: string;
  /** undefined: a redis-server the program starts itself in DATA_DIR. */
  redisUrl?: string;
  /** Prefix of every Redis key and channel: several deployments can share one Redis. */
  redisPrefix: string;
  pools: PoolDefinition[];
  /** The image definitions (IMAGES / IMAGES_FILE; DEFAULT_IMAGES when neither is set). */
  images: ImageDefinition[];
  /** What image builds take from the host's environment: a Debian mirror override, proxy variables. */
  imageBuild: ImageBuildConfig;
  /** A worker builds the images of its pools that are missing or outdated on its host (BUILD_IMAGES, default on). */
  buildImages: boolean;
  limits: SubmissionLimits;
  /** Bytes of stdout and of stderr kept in a test's result. */
  maxOutputBytes: number;
  /** Bytes of each complete log of a test (stdout.log, stderr.log, service-<name>.log), beyond which it is cut (MAX_LOG_BYTES). */
  maxLogBytes: number;
  /** The directory of the artifact store (ARTIFACT_DIR; default DATA_DIR/artifacts): shared by every process in scaled mode. */
  artifactDir: string;
  /** Finished plans older than this many days are deleted with everything they hold; 0: kept forever (RETENTION_DAYS). */
  retentionDays: number;
  /** How often the API looks for plans past their retention (RETENTION_INTERVAL_MS). */
  retentionIntervalMs: number;
  /** What one test's artifacts may hold (MAX_ARTIFACT_BYTES, MAX_ARTIFACT_FILES); the rest is left out and said. */
  artifactLimits: { maxBytes: number; maxFiles: number };
  logLevel: string;
  /** Request body limit of the HTTP API. */
  maxRequestBytes: number;
  workerHeartbeatMs: number;
  /** The host user sandboxes run as when the orchestrator runs as root. */
  sandboxUser: { uid: number; gid: number; name: string };
  /** BullMQ lock of a running job: a dead worker's tests come back to the queue after about this long. */
  workerLockMs: number;
  /** Pools a worker process serves; undefined: every pool it has a driver for. */
  workerPools?: string[];
  reconcileIntervalMs: number;
  /** Host/Origin checks and the limits on queries, bodies and WebSockets of the API. */
  apiSecurity: ApiSecurity;
  /** Tokens (AUTH) and the fair-use limits per token. */
  auth: AuthConfig;
  /** Each environment driver's own section, by kind (src/environments/registry.ts); absent: no such driver here. */
  drivers: { CONTAINER?: ContainerDriverConfig; QEMU?: QemuDriverConfig };
}

export interface ImageBuildConfig {
  /** DEBIAN_MIRROR: the mirror debootstrap uses; unset: the first of the host's apt sources. */
  debianMirror?: string;
  /** http_proxy, https_proxy, no_proxy (either case) as set: debootstrap, apt and skopeo get them. */
  proxyEnv: Record<string, string>;
}

const PROXY_VARIABLES = ['http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY'] as const;

// An empty variable (`PORT=` in an env file) counts as unset, not as 0.
const unsetIfEmpty = (v: unknown) => (v === '' ? undefined : v);
const int = (min: number, max: number, fallback: number) =>
  z.preprocess(unsetIfEmpty, z.coerce.number().int().min(min).max(max).default(fallback));
const positive = (fallback: number) => int(1, Number.MAX_SAFE_INTEGER, fallback);

const envSchema = z.object({
  PORT: int(0, 65535, 4000),
  HOST: z.string().min(1).default('127.0.0.1'),
  DATA_DIR: z.string().min(1).default('./data'),
  IMAGE_DIR: z.string().min(1).optional(),
  BUNDLE_DIR: z.preprocess(unsetIfEmpty, z.string().min(1).optional()),
  MAX_BUNDLE_BYTES: positive(DEFAULT_BUNDLE_LIMITS.maxArchiveBytes),
  MAX_BUNDLE_UNPACKED_BYTES: positive(DEFAULT_BUNDLE_LIMITS.maxUnpackedBytes),
  MAX_BUNDLE_FILES: int(1, 10_000_000, DEFAULT_BUNDLE_LIMITS.maxEntries),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'a postgresql:// URL (unset for the embedded database)')
    .optional(),
  REDIS_URL: z
    .string()
    .regex(/^(rediss?|unix):\/\//, 'a redis://, rediss:// or unix:// URL (unset for an embedded redis-server)')
    .optional(),
  REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9_-]{1,40}$/).default('orch'),
  POOLS: z.string().optional(),
  POOLS_FILE: z.string().optional(),
  IMAGES: z.string().optional(),
  BUILD_IMAGES: z.preprocess(unsetIfEmpty, z.enum(['on', 'off', 'true', 'false', '1', '0']).default('on')).transform((v) => ['on', 'true', '1'].includes(v)),
  IMAGES_FILE: z.string().optional(),
  DEBIAN_MIRROR: z.preprocess(unsetIfEmpty, z.string().regex(/^https?:\/\/[^\s'"\\]+$/, 'an http:// or https:// URL of a Debian mirror').optional()),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  MAX_OUTPUT_BYTES: positive(1024 * 1024),
  MAX_LOG_BYTES: positive(64 * 1024 * 1024),
  ARTIFACT_DIR: z.preprocess(unsetIfEmpty, z.string().min(1).optional()),
  RETENTION_DAYS: int(0, 36_500, 30),
  RETENTION_INTERVAL_MS: int(1_000, 86_400_000, 600_000),
  MAX_ARTIFACT_BYTES: positive(1024 * 1024 * 1024),
  MAX_ARTIFACT_FILES: int(1, 100_000, 1000),
  MAX_TESTS_PER_PLAN: positive(50_000),
  DEFAULT_TIMEOUT_SECONDS: int(1, 86_400, 600),
  MAX_REQUEST_BYTES: positive(256 * 1024 * 1024),
  WORKER_HEARTBEAT_MS: positive(5_000),
  RECONCILE_INTERVAL_MS: positive(5_000),
  WORKER_LOCK_MS: int(1_000, 600_000, 10_000),
  SANDBOX_USER: z.string().regex(/^([a-z_][a-z0-9_-]{0,31}|\d+(:\d+)?)$/, 'a user name, or uid[:gid]').optional(),
  WORKER_POOLS: z
    .string()
    .regex(/^[a-z0-9_-]+(,[a-z0-9_-]+)*$/, 'a comma-separated list of pool names')
    .optional(),
  ...apiSecurityEnv,
  ...authEnv,
  ...containerDriverEnv,
  ...qemuDriverEnv,
});

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

function formatIssues(issues: readonly z.core.$ZodIssue[], prefix: string): string[] {
  return issues.map((i) => {
    const path = i.path.length ? `${prefix}${prefix ? '.' : ''}${i.path.map(String).join('.')}` : prefix;
    return `${path || '(root)'}: ${i.message}`;
  });
}

/** The names of every variable loadConfig reads, for the commands' --help. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

/** Parses the environment once; lists every problem at once. Nothing below main reads process.env. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) problems.push(...formatIssues(parsed.error.issues, ''));

  let pools: PoolDefinition[] = DEFAULT_POOLS;
  try {
    const source = loadPoolsSource({ json: env.POOLS, file: env.POOLS_FILE });
    if (source) {
      const p = poolsSchema.safeParse(source.value);
      if (p.success) pools = p.data;
      else problems.push(...formatIssues(p.error.issues, `${source.origin} pools`));
    }
  } catch (e) {
    problems.push((e as Error).message);
  }
  let images: ImageDefinition[] = DEFAULT_IMAGES;
  const loadedImages = loadImages({ json: env.IMAGES, file: env.IMAGES_FILE });
  if (loadedImages && 'problems' in loadedImages) problems.push(...loadedImages.problems);
  else if (loadedImages) images = loadedImages.images;
  if (!(loadedImages && 'problems' in loadedImages)) problems.push(...poolImageProblems(pools, images));
  if (parsed.success && parsed.data.WORKER_POOLS) {
    for (const name of parsed.data.WORKER_POOLS.split(',')) {
      if (!pools.some((p) => p.name === name)) problems.push(`WORKER_POOLS: no pool named "${name}" is configured`);
    }
  }
  let sandboxUser: Config['sandboxUser'] = { uid: 65534, gid: 65534, name: 'nobody' };
  try {
    sandboxUser = resolveSandboxUser(parsed.success ? parsed.data.SANDBOX_USER : undefined, '/etc/passwd');
  } catch (e) {
    problems.push((e as Error).message);
  }
  // Images must be readable by the sandbox's unprivileged user: for root (whose home is closed to
  // others) they live in /var/cache unless XDG_CACHE_HOME says otherwise; for anyone else in their cache.
  const cacheHome = env.XDG_CACHE_HOME || (process.getuid?.() === 0 ? '/var/cache' : join(homedir(), '.cache'));
  const defaultImageDir = join(cacheHome, 'test-orchestrator', 'images');
  let container: ContainerDriverConfig | undefined;
  if (parsed.success) {
    const section = containerDriverConfigFrom(parsed.data, { imageDir: resolve(parsed.data.IMAGE_DIR ?? defaultImageDir), sandboxUser });
    if ('problems' in section) problems.push(...section.problems);
    else container = section.config;
  }
  if (problems.length || !parsed.success) throw new ConfigError(problems);

  const e = parsed.data;
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir: resolve(e.DATA_DIR),
    imageDir: resolve(e.IMAGE_DIR ?? defaultImageDir),
    bundleDir: resolve(e.BUNDLE_DIR ?? join(e.DATA_DIR, 'bundles')),
    bundleLimits: { maxArchiveBytes: e.MAX_BUNDLE_BYTES, maxUnpackedBytes: e.MAX_BUNDLE_UNPACKED_BYTES, maxEntries: e.MAX_BUNDLE_FILES },
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    redisPrefix: e.REDIS_PREFIX,
    pools,
    images,
    buildImages: e.BUILD_IMAGES,
    imageBuild: {
      debianMirror: e.DEBIAN_MIRROR,
      proxyEnv: Object.fromEntries(PROXY_VARIABLES.flatMap((k) => (env[k] ? [[k, env[k]]] : []))),
    },
    limits: {
      ...PLAN_LIMITS, // the fixed limits, shared with the CLI's check of a plan file
      maxTestsPerPlan: e.MAX_TESTS_PER_PLAN,
      defaultTimeoutSeconds: e.DEFAULT_TIMEOUT_SECONDS,
      defaultMaxRetries: 2,
    },
    maxOutputBytes: e.MAX_OUTPUT_BYTES,
    maxLogBytes: e.MAX_LOG_BYTES,
    artifactDir: resolve(e.ARTIFACT_DIR ?? join(e.DATA_DIR, 'artifacts')),
    retentionDays: e.RETENTION_DAYS,
    retentionIntervalMs: e.RETENTION_INTERVAL_MS,
    artifactLimits: { maxBytes: e.MAX_ARTIFACT_BYTES, maxFiles: e.MAX_ARTIFACT_FILES },
    logLevel: e.LOG_LEVEL,
    maxRequestBytes: e.MAX_REQUEST_BYTES,
    workerHeartbeatMs: e.WORKER_HEARTBEAT_MS,
    reconcileIntervalMs: e.RECONCILE_INTERVAL_MS,
    workerPools: e.WORKER_POOLS?.split(','),
    workerLockMs: e.WORKER_LOCK_MS,
    sandboxUser,
    apiSecurity: apiSecurityFrom(e, e.HOST),
    auth: authFrom(e),
    drivers: {
      CONTAINER: container,
      QEMU: container && qemuDriverConfigSchema.parse({
        imageDir: container.imageDir,
        setprivPath: container.setprivPath,
        sandboxUid: container.sandboxUid,
        sandboxGid: container.sandboxGid,
        cgroupRoot: container.cgroupRoot,
        cgroupParent: container.cgroupParent,
        disableCgroups: container.disableCgroups,
        buildMissingImages: container.buildMissingImages,
        accel: e.QEMU_ACCEL,
        warmReset: e.QEMU_WARM_RESET,
        spareVms: e.QEMU_SPARE_VMS,
      }),
    },
  };
}

/**
 * SANDBOX_USER: a name from the passwd file or uid[:gid]. Unset: the system user `orch-sandbox` when it
 * exists (`npm run images` creates it as root), else nobody (65534). Never root.
 */
export function resolveSandboxUser(value: string | undefined, passwdFile: string): Config['sandboxUser'] {
  const numeric = value && /^(\d+)(?::(\d+))?$/.exec(value);
  let user: Config['sandboxUser'] | undefined;
  if (numeric) user = { uid: Number(numeric[1]), gid: Number(numeric[2] ?? numeric[1]), name: value };
  else {
    let passwd = '';
    try {
      passwd = readFileSync(passwdFile, 'utf8');
    } catch (err) {
      // the expected answer when there is no passwd file: only numeric ids can be resolved
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`SANDBOX_USER: cannot read ${passwdFile}: ${(err as Error).message}`);
    }
    const find = (name: string) => {
      const line = passwd.split('\n').find((l) => l.split(':')[0] === name);
      if (!line) return undefined;
      const [, , uid, gid] = line.split(':');
      return { uid: Number(uid), gid: Number(gid), name };
    };
    user = value ? find(value) : (find('orch-sandbox') ?? { uid: 65534, gid: 65534, name: 'nobody' });
    if (!user) throw new Error(`SANDBOX_USER: no user "${value}" in ${passwdFile}`);
  }
  if (user.uid === 0 || user.gid === 0) throw new Error('SANDBOX_USER: sandboxes never run as root (uid or gid 0)');
  return user;
}
