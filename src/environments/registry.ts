// The driver registry: kind → factory. Each driver has its own configuration section, validated by
// its schema (the sections are parsed from the environment once, in src/config), and declares what
// it can do. The worker makes drivers here through the driver host (remote/), the driver host makes
// them here in its own process; a new kind of environment (a VM) joins by adding its factory.

import type { z } from 'zod';
import { containerDriverFactory } from './container/container.factory';
import { qemuDriverFactory } from './qemu/qemu.factory';
import type { DriverCapabilities, EnvironmentDriver, EnvironmentKind } from './driver';
import type { DriverLogger } from './container/image';

export interface DriverDeps {
  logger: DriverLogger;
}

export interface DriverFactory<C = unknown> {
  readonly kind: EnvironmentKind;
  /** Validates the driver's configuration section (JSON-safe: it crosses to the driver host as it is). */
  readonly configSchema: z.ZodType<C, unknown>;
  /** What a driver of this configuration can do, known without making one. */
  capabilities(config: C): DriverCapabilities;
  create(config: C, deps: DriverDeps): EnvironmentDriver;
}

const FACTORIES: Partial<Record<EnvironmentKind, DriverFactory<never>>> = {
  CONTAINER: containerDriverFactory as DriverFactory<never>,
  QEMU: qemuDriverFactory as DriverFactory<never>,
};

/** The kinds this build has a driver for. */
export function registeredKinds(): EnvironmentKind[] {
  return Object.keys(FACTORIES) as EnvironmentKind[];
}

export function driverFactory(kind: EnvironmentKind): DriverFactory<unknown> | undefined {
  return FACTORIES[kind] as DriverFactory<unknown> | undefined;
}

/** The section validated by its driver's schema; every problem in one Error naming the kind. */
export function parseDriverConfig(kind: EnvironmentKind, section: unknown): { factory: DriverFactory<unknown>; config: unknown } {
  const factory = driverFactory(kind);
  if (!factory) throw new Error(`no environment driver for kind ${String(kind)} (drivers: ${registeredKinds().join(', ')})`);
  const parsed = factory.configSchema.safeParse(section);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(section)'}: ${i.message}`);
    throw new Error(`invalid ${kind} driver configuration: ${problems.join('; ')}`);
  }
  return { factory, config: parsed.data };
}

/** A driver of `kind` from its configuration section (validated here). */
export function createDriver(kind: EnvironmentKind, section: unknown, deps: DriverDeps): EnvironmentDriver {
  const { factory, config } = parseDriverConfig(kind, section);
  return factory.create(config, deps);
}
