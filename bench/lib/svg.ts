// Owns the benchmark chart: a hand-written SVG of throughput (x) against p99 latency (y, log scale), one polyline
// per system (Conclave raft, Conclave pbft, etcd), each point labelled with its concurrency. No dependencies.

export interface ChartPoint {
  concurrency: number;
  throughput: number;
  p99Ms: number;
}

export interface ChartSeries {
  name: string;
  points: ChartPoint[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceStep(range: number, ticks: number): number {
  const raw = range / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const n = raw / mag;
  return (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag;
}

export function renderChart(series: ChartSeries[], title: string, subtitle: string): string {
  const W = 860;
  const H = 520;
  const m = { left: 80, right: 200, top: 60, bottom: 60 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const all = series.flatMap((s) => s.points).filter((p) => p.throughput > 0 && p.p99Ms > 0);
  const maxX = Math.max(1, ...all.map((p) => p.throughput)) * 1.1;
  const minY = Math.max(0.01, Math.min(...all.map((p) => p.p99Ms), 1) / 2);
  const maxY = Math.max(minY * 10, ...all.map((p) => p.p99Ms)) * 1.5;
  const lminY = Math.log10(minY);
  const lmaxY = Math.log10(maxY);
  const x = (v: number) => m.left + (v / maxX) * pw;
  const y = (v: number) => m.top + ph - ((Math.log10(Math.max(v, minY)) - lminY) / (lmaxY - lminY)) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="${W / 2}" y="42" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`);
  // axes and grid
  const step = niceStep(maxX, 6);
  for (let v = 0; v <= maxX; v += step) {
    out.push(`<line x1="${x(v)}" y1="${m.top}" x2="${x(v)}" y2="${m.top + ph}" stroke="#eee"/>`);
    out.push(`<text x="${x(v)}" y="${m.top + ph + 18}" text-anchor="middle">${Math.round(v)}</text>`);
  }
  for (let e = Math.floor(lminY); e <= Math.ceil(lmaxY); e++) {
    for (const k of [1, 2, 5]) {
      const v = k * 10 ** e;
      if (v < minY || v > maxY) continue;
      out.push(`<line x1="${m.left}" y1="${y(v)}" x2="${m.left + pw}" y2="${y(v)}" stroke="${k === 1 ? '#ddd' : '#f3f3f3'}"/>`);
      out.push(`<text x="${m.left - 8}" y="${y(v) + 4}" text-anchor="end">${v >= 1 ? v : v.toPrecision(1)}</text>`);
    }
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 18}" text-anchor="middle">committed per second (verdicts / puts)</text>`);
  out.push(`<text x="20" y="${m.top + ph / 2}" text-anchor="middle" transform="rotate(-90 20 ${m.top + ph / 2})">p99 latency, ms (log scale)</text>`);
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const pts = s.points.filter((p) => p.throughput > 0 && p.p99Ms > 0).sort((a, b) => a.concurrency - b.concurrency);
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => `${x(p.throughput).toFixed(1)},${y(p.p99Ms).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) {
      out.push(`<circle cx="${x(p.throughput).toFixed(1)}" cy="${y(p.p99Ms).toFixed(1)}" r="4" fill="${color}"/>`);
      out.push(`<text x="${(x(p.throughput) + 6).toFixed(1)}" y="${(y(p.p99Ms) - 6).toFixed(1)}" fill="${color}">${p.concurrency}</text>`);
    }
    const ly = m.top + 10 + i * 22;
    out.push(`<rect x="${m.left + pw + 16}" y="${ly - 8}" width="14" height="4" fill="${color}"/>`);
    out.push(`<text x="${m.left + pw + 36}" y="${ly - 2}">${esc(s.name)}${pts.length === 0 ? ' (no data)' : ''}</text>`);
  });
  out.push(`<text x="${m.left + pw + 16}" y="${m.top + 10 + series.length * 22 + 10}" fill="#555">labels: requests in flight</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
