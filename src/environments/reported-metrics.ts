// The figures a test reports itself, in two ways (README "Performance tests"):
//   - lines `##metric NAME VALUE [UNIT]` on stdout, read from the whole stream as it comes (also beyond
//     the part of stdout that is kept), whatever the chunks it arrives in;
//   - a JSON file at $METRICS_FILE: `[{"name": "...", "value": 1.5, "unit": "ms"}, ...]` (unit optional).
// Both are hostile input: at most MAX_REPORTED_METRICS in all (stdout first), a name of at most
// MAX_METRIC_NAME characters of a small alphabet, a unit of at most MAX_METRIC_UNIT, finite numbers
// only; anything else is ignored (counted), never an error of the test. Pure.

export interface ReportedMetric {
  name: string;
  value: number;
  unit: string | null;
}

export const MAX_REPORTED_METRICS = 1000;
export const MAX_METRIC_NAME = 128;
export const MAX_METRIC_UNIT = 32;
/** A `##metric` line longer than this is ignored (and is not kept while it arrives). */
export const MAX_METRIC_LINE = 512;
/** A metrics file larger than this is ignored. */
export const MAX_METRICS_FILE_BYTES = 1024 * 1024;

const PREFIX = Buffer.from('##metric ');
const NL_PREFIX = Buffer.from('\n##metric ');
const NAME = new RegExp(`^[A-Za-z_][A-Za-z0-9_.:/-]{0,${MAX_METRIC_NAME - 1}}$`);
// Printable, no spaces; letters of any script (µs, °C) allowed.
const UNIT = new RegExp(`^[\\p{L}\\p{N}\\p{P}\\p{S}]{1,${MAX_METRIC_UNIT}}$`, 'u');
const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** One metric from its parts, or null when any part is not acceptable. */
export function toMetric(name: unknown, value: unknown, unit: unknown): ReportedMetric | null {
  if (typeof name !== 'string' || !NAME.test(name)) return null;
  let v: number;
  if (typeof value === 'number') v = value;
  else if (typeof value === 'string' && NUMBER.test(value)) v = Number(value);
  else return null;
  if (!Number.isFinite(v)) return null;
  if (unit !== undefined && unit !== null && (typeof unit !== 'string' || !UNIT.test(unit))) return null;
  return { name, value: v, unit: typeof unit === 'string' ? unit : null };
}

/** `##metric NAME VALUE [UNIT]` (fields separated by spaces or tabs; a trailing CR ignored) → a metric, or null. */
export function parseMetricLine(line: string): ReportedMetric | null {
  if (!line.startsWith('##metric ')) return null;
  const fields = line.slice(PREFIX.length).replace(/\r$/, '').trim().split(/[ \t]+/);
  if (fields.length < 2 || fields.length > 3) return null;
  return toMetric(fields[0], fields[1], fields[2]);
}

/**
 * Finds `##metric` lines in a byte stream fed chunk by chunk. Only lines that begin with the prefix are
 * looked at (found with Buffer.indexOf, so megabytes of other output cost little); at most
 * MAX_METRIC_LINE bytes of an unfinished line are kept between chunks.
 */
export class MetricLineScanner {
  readonly metrics: ReportedMetric[] = [];
  /** Lines that began with the prefix but were not acceptable, and metrics beyond the cap. */
  ignored = 0;
  /** The start of the current line, while it may still be a metric line (a prefix of it, or a metric line). */
  private pending: Buffer | null = Buffer.alloc(0);

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    let data: Buffer;
    let pos = 0;
    if (this.pending) {
      data = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    } else {
      // in the middle of a line that is not a metric: skip to its end
      const nl = chunk.indexOf(10);
      if (nl < 0) return;
      data = chunk;
      pos = nl + 1;
    }
    this.pending = null;
    for (;;) {
      // pos is the start of a line
      let start: number;
      if (data.length - pos >= PREFIX.length && data.subarray(pos, pos + PREFIX.length).equals(PREFIX)) start = pos;
      else {
        const i = data.indexOf(NL_PREFIX, pos);
        start = i < 0 ? -1 : i + 1;
      }
      if (start < 0) {
        // No metric line starts in what is left; its last line may be the beginning of one.
        const lastNl = data.lastIndexOf(10);
        const tail = data.subarray(Math.max(pos, lastNl + 1));
        this.pending = tail.length < PREFIX.length && PREFIX.subarray(0, tail.length).equals(tail) ? Buffer.from(tail) : null;
        return;
      }
      const end = data.indexOf(10, start);
      if (end < 0) {
        const tail = data.subarray(start);
        if (tail.length <= MAX_METRIC_LINE) this.pending = Buffer.from(tail);
        else this.ignored++; // too long: skipped to its end
        return;
      }
      this.line(data.subarray(start, end));
      pos = end + 1;
    }
  }

  /** The stream ended: a last metric line without a newline counts. */
  end(): ReportedMetric[] {
    if (this.pending && this.pending.length >= PREFIX.length) this.line(this.pending);
    this.pending = null;
    return this.metrics;
  }

  private line(bytes: Buffer): void {
    if (bytes.length > MAX_METRIC_LINE) {
      this.ignored++;
      return;
    }
    const m = parseMetricLine(bytes.toString('utf8'));
    if (!m || this.metrics.length >= MAX_REPORTED_METRICS) this.ignored++;
    else this.metrics.push(m);
  }
}

/**
 * The metrics of a $METRICS_FILE's text: a JSON array of `{name, value, unit?}`; entries that are not
 * acceptable are ignored, and so is a file that is not such an array (`ignored` then counts it as one).
 */
export function parseMetricsFile(text: string, room = MAX_REPORTED_METRICS): { metrics: ReportedMetric[]; ignored: number } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { metrics: [], ignored: 1 }; // not JSON: the whole file is ignored, and counted
  }
  if (!Array.isArray(parsed)) return { metrics: [], ignored: 1 };
  const metrics: ReportedMetric[] = [];
  let ignored = 0;
  for (const entry of parsed) {
    const m = entry !== null && typeof entry === 'object' && !Array.isArray(entry) ? toMetric((entry as Record<string, unknown>).name, (entry as Record<string, unknown>).value, (entry as Record<string, unknown>).unit) : null;
    if (m && typeof (entry as Record<string, unknown>).value === 'number' && metrics.length < room) metrics.push(m);
    else ignored++;
  }
  return { metrics, ignored };
}
