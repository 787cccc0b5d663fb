// Owns the benchmark latency histogram: an HDR-style log-bucketed histogram of microsecond values (64 linear
// sub-buckets per power of two, so every reported percentile is within ~1.6% of the true value), no dependencies.

const SUB_BITS = 6;
const SUB = 1 << SUB_BITS; // 64
const BUCKETS = 64 * SUB + 2 * SUB;

/** Index of the bucket holding `v` (a non-negative integer): exact below 128, then 64 buckets per octave. */
function indexOf(v: number): number {
  if (v < 2 * SUB) return v;
  const bits = 31 - Math.clz32(v); // floor(log2 v) for v < 2^31
  const shift = bits - SUB_BITS;
  return shift * SUB + Math.floor(v / 2 ** shift);
}

/** The midpoint of a bucket's range of values. */
function valueOf(index: number): number {
  if (index < 2 * SUB) return index;
  const shift = Math.floor(index / SUB) - 1;
  const top = index - shift * SUB; // in [64, 128)
  return (top + 0.5) * 2 ** shift;
}

export class Histogram {
  private readonly counts = new Float64Array(BUCKETS);
  count = 0;
  min = Infinity;
  max = 0;
  private sum = 0;

  /** Records one value in microseconds (clamped to [0, 2^31)). */
  record(micros: number): void {
    const v = Math.min(2 ** 31 - 1, Math.max(0, Math.round(micros)));
    this.counts[indexOf(v)]!++;
    this.count++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  merge(other: Histogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.count += other.count;
    this.sum += other.sum;
    this.min = Math.min(this.min, other.min);
    this.max = Math.max(this.max, other.max);
  }

  /** The value (µs) at quantile q in [0, 1]; 0 when empty. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, valueOf(i)));
    }
    return this.max;
  }

  mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }

  /** p50 / p90 / p99 / p999 / max / mean in milliseconds, 3 decimals. */
  summaryMs(): { p50: number; p90: number; p99: number; p999: number; max: number; mean: number } {
    const ms = (us: number) => Math.round(us) / 1000;
    return {
      p50: ms(this.quantile(0.5)),
      p90: ms(this.quantile(0.9)),
      p99: ms(this.quantile(0.99)),
      p999: ms(this.quantile(0.999)),
      max: ms(this.count ? this.max : 0),
      mean: ms(this.mean()),
    };
  }
}
