// The command line of one command: its options, its help text, and the parse that turns argv into
// values or one UsageError line. `--help`/`-h` anywhere (before `--`) wins over everything else.

export interface OptionSpec {
  /** long name without the dashes, e.g. "url" */
  name: string;
  short?: string;
  /** the value's placeholder ("URL"); absent: a flag */
  value?: string;
  help: string;
}

export interface CommandSpec {
  name: string;
  /** e.g. "PLAN_FILE" or "[FILE]"; a last one named "NAME..." takes any number of arguments */
  positionals?: { name: string; required: boolean; help: string }[];
  summary: string;
  /** paragraphs printed after the usage line */
  description?: string;
  options: OptionSpec[];
  /** further sections (environment, exit codes), printed as they are */
  sections?: string[];
}

export interface ParsedArgs {
  help: boolean;
  options: Record<string, string | true>;
  positionals: string[];
}

/** A mistake on the command line: exit code 2, one line. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const HELP: OptionSpec = { name: 'help', short: 'h', help: 'print this help and exit' };

export function parseArgs(spec: CommandSpec, argv: readonly string[]): ParsedArgs {
  const ddash = argv.indexOf('--');
  const before = ddash === -1 ? argv : argv.slice(0, ddash);
  if (before.includes('--help') || before.includes('-h')) return { help: true, options: {}, positionals: [] };
  const hint = `(orchestrator ${spec.name} --help)`;
  const options: Record<string, string | true> = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (i === ddash) {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('-') && a !== '-') {
      const eq = a.indexOf('=');
      const key = eq === -1 ? a : a.slice(0, eq);
      const opt = spec.options.find((o) => `--${o.name}` === key || (o.short && `-${o.short}` === key));
      if (!opt) throw new UsageError(`unknown option ${oneArg(key)} ${hint}`);
      if (opt.value === undefined) {
        if (eq !== -1) throw new UsageError(`--${opt.name} takes no value ${hint}`);
        options[opt.name] = true;
      } else {
        const v = eq !== -1 ? a.slice(eq + 1) : argv[++i];
        if (v === undefined || (eq === -1 && v.startsWith('--'))) throw new UsageError(`--${opt.name} needs a value: --${opt.name} ${opt.value} ${hint}`);
        if (options[opt.name] !== undefined) throw new UsageError(`--${opt.name} is given twice ${hint}`);
        options[opt.name] = v;
      }
      continue;
    }
    positionals.push(a);
  }
  const allowed = spec.positionals ?? [];
  const required = allowed.filter((p) => p.required);
  if (positionals.length < required.length) throw new UsageError(`${required[positionals.length].name} is missing ${hint}`);
  const variadic = allowed.length > 0 && allowed[allowed.length - 1].name.endsWith('...');
  if (positionals.length > allowed.length && !variadic)
    throw new UsageError(`unexpected argument ${oneArg(positionals[allowed.length])}${allowed.length ? ` (${allowed.map((p) => p.name).join(' ')} only)` : ''} ${hint}`);
  return { help: false, options, positionals };
}

/** An argument quoted for an error line: at most 60 characters, no control characters. */
export function oneArg(a: string): string {
  const shown = JSON.stringify(a.length > 60 ? `${a.slice(0, 60)}…` : a);
  return /^"[A-Za-z0-9_./:=@+-]+"$/.test(shown) ? shown.slice(1, -1) : shown;
}

export function helpText(spec: CommandSpec): string {
  const options = [...spec.options, HELP];
  const args = (spec.positionals ?? []).map((p) => (p.required ? p.name : `[${p.name}]`));
  const flags = spec.options.map((o) => `[--${o.name}${o.value ? ` ${o.value}` : ''}]`);
  const lines = [`usage: orchestrator ${[spec.name, ...args, ...flags].join(' ')}`, '', spec.summary];
  if (spec.description) lines.push('', spec.description);
  const rows: [string, string][] = [
    ...(spec.positionals ?? []).map((p): [string, string] => [p.name, p.help]),
    ...options.map((o): [string, string] => [`${o.short ? `-${o.short}, ` : '    '}--${o.name}${o.value ? ` ${o.value}` : ''}`, o.help]),
  ];
  const width = Math.max(...rows.map(([l]) => l.length)) + 2;
  lines.push('', 'arguments and options:', ...rows.map(([l, h]) => `  ${l.padEnd(width)}${h.split('\n').join(`\n  ${' '.repeat(width)}`)}`));
  for (const s of spec.sections ?? []) lines.push('', s);
  return lines.join('\n');
}
