// A time-series chart on a <canvas>, written for the explorer: raw points (any number: each
// draw reduces them to a min/max per pixel column, so 100,000 points cost one pass, about a
// millisecond) or aggregate buckets (a min–max band with the mean as the line). New points
// are appended live; draws are coalesced to one per animation frame.

const PAD = { left: 56, right: 12, top: 10, bottom: 24 };

/** Round numbers for an axis from `lo` to `hi`, about `n` of them. */
function ticks(lo, hi, n) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function timeLabel(ms, span) {
  const d = new Date(ms);
  const pad = (x) => String(x).padStart(2, '0');
  if (span < 2 * 86400e3) return `${pad(d.getHours())}:${pad(d.getMinutes())}${span < 600e3 ? `:${pad(d.getSeconds())}` : ''}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** A chart of one series. */
export class Chart {
  constructor(canvas) {
    this.canvas = canvas;
    this.xs = new Float64Array(1024);
    this.ys = new Float64Array(1024);
    this.n = 0;
    this.buckets = null; // {x, min, max, mean} arrays when showing aggregates
    this.pending = false;
    this.lastDrawMs = 0;
    this.range = null; // [from, to] fixed x range, or null to fit the data
    new ResizeObserver(() => this.schedule()).observe(canvas);
  }

  /** Shows raw points (sorted by x here; NaN values are left out). */
  setPoints(xs, ys) {
    const order = Array.from(xs.keys()).filter((i) => Number.isFinite(ys[i]));
    order.sort((a, b) => xs[a] - xs[b]);
    this.n = 0;
    this.grow(order.length);
    for (const i of order) this.push(xs[i], ys[i]);
    this.buckets = null;
    this.schedule();
  }

  /** Shows aggregate buckets: `[{start_ms, min, max, mean}]`, oldest first. */
  setBuckets(buckets, bucketMs) {
    const k = buckets.length;
    this.buckets = {
      x: Float64Array.from(buckets, (b) => b.start_ms + bucketMs / 2),
      min: Float64Array.from(buckets, (b) => b.min),
      max: Float64Array.from(buckets, (b) => b.max),
      mean: Float64Array.from(buckets, (b) => b.mean),
      width: bucketMs,
      k,
    };
    this.n = 0;
    this.schedule();
  }

  /** Adds one raw point (a reading that just became final), in order or not. */
  append(x, y) {
    if (!Number.isFinite(y)) return;
    if (this.buckets) {
      // A live point on an aggregate view joins its bucket.
      const b = this.buckets;
      const i = b.k - 1;
      if (i >= 0 && x < b.x[i] + b.width / 2) {
        b.min[i] = Math.min(b.min[i], y);
        b.max[i] = Math.max(b.max[i], y);
      } else {
        this.setBuckets(
          [...Array.from({ length: b.k }, (_, j) => ({ start_ms: b.x[j] - b.width / 2, min: b.min[j], max: b.max[j], mean: b.mean[j] })),
            { start_ms: Math.floor(x / b.width) * b.width, min: y, max: y, mean: y }],
          b.width,
        );
        return;
      }
    } else {
      this.grow(this.n + 1);
      let i = this.n;
      while (i > 0 && this.xs[i - 1] > x) i--;
      this.xs.copyWithin(i + 1, i, this.n);
      this.ys.copyWithin(i + 1, i, this.n);
      this.xs[i] = x;
      this.ys[i] = y;
      this.n++;
    }
    if (this.range && x > this.range[1]) this.range[1] = x;
    this.schedule();
  }

  /** How many raw points or buckets the chart holds. */
  get size() {
    return this.buckets ? this.buckets.k : this.n;
  }

  grow(need) {
    if (need <= this.xs.length) return;
    let cap = this.xs.length;
    while (cap < need) cap *= 2;
    const xs = new Float64Array(cap);
    const ys = new Float64Array(cap);
    xs.set(this.xs.subarray(0, this.n));
    ys.set(this.ys.subarray(0, this.n));
    this.xs = xs;
    this.ys = ys;
  }

  push(x, y) {
    this.xs[this.n] = x;
    this.ys[this.n] = y;
    this.n++;
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  /** The data's x and y extent. */
  extent() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    if (this.buckets) {
      const b = this.buckets;
      for (let i = 0; i < b.k; i++) {
        x0 = Math.min(x0, b.x[i]); x1 = Math.max(x1, b.x[i]);
        y0 = Math.min(y0, b.min[i]); y1 = Math.max(y1, b.max[i]);
      }
    } else {
      if (this.n) { x0 = this.xs[0]; x1 = this.xs[this.n - 1]; }
      for (let i = 0; i < this.n; i++) { const y = this.ys[i]; if (y < y0) y0 = y; if (y > y1) y1 = y; }
    }
    if (this.range) [x0, x1] = [Math.min(x0, this.range[0]), Math.max(x1, this.range[1])];
    if (y0 === y1) { y0 -= 1; y1 += 1; }
    const m = (y1 - y0) * 0.05;
    return { x0, x1: x1 > x0 ? x1 : x0 + 1, y0: y0 - m, y1: y1 + m };
  }

  draw() {
    const t0 = performance.now();
    const dpr = window.devicePixelRatio || 1;
    const { clientWidth: cw, clientHeight: ch } = this.canvas;
    if (!cw || !ch) return;
    this.canvas.width = Math.round(cw * dpr);
    this.canvas.height = Math.round(ch * dpr);
    const g = this.canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, cw, ch);
    const style = getComputedStyle(this.canvas);
    const ink = style.getPropertyValue('--chart-ink') || '#1b6ec2';
    const muted = style.getPropertyValue('--chart-muted') || '#888';
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = muted;
    if (this.size === 0) {
      g.fillText('no numeric readings in this range', PAD.left, ch / 2);
      this.lastDrawMs = performance.now() - t0;
      return;
    }
    const { x0, x1, y0, y1 } = this.extent();
    const w = cw - PAD.left - PAD.right;
    const hgt = ch - PAD.top - PAD.bottom;
    const px = (x) => PAD.left + ((x - x0) / (x1 - x0)) * w;
    const py = (y) => PAD.top + (1 - (y - y0) / (y1 - y0)) * hgt;

    // Axes.
    g.strokeStyle = '#0001';
    g.textAlign = 'right';
    for (const v of ticks(y0, y1, 5)) {
      g.beginPath(); g.moveTo(PAD.left, py(v)); g.lineTo(cw - PAD.right, py(v)); g.stroke();
      g.fillText(String(v), PAD.left - 6, py(v) + 4);
    }
    g.textAlign = 'center';
    const span = x1 - x0;
    for (const v of ticks(x0, x1, Math.max(2, Math.floor(w / 110)))) g.fillText(timeLabel(v, span), px(v), ch - 6);

    g.strokeStyle = ink;
    g.fillStyle = ink;
    g.lineWidth = 1.25;
    if (this.buckets) {
      const b = this.buckets;
      g.globalAlpha = 0.2;
      g.beginPath();
      for (let i = 0; i < b.k; i++) g.lineTo(px(b.x[i]), py(b.max[i]));
      for (let i = b.k - 1; i >= 0; i--) g.lineTo(px(b.x[i]), py(b.min[i]));
      g.fill();
      g.globalAlpha = 1;
      g.beginPath();
      for (let i = 0; i < b.k; i++) g.lineTo(px(b.x[i]), py(b.mean[i]));
      g.stroke();
    } else if (this.n <= w) {
      g.beginPath();
      for (let i = 0; i < this.n; i++) g.lineTo(px(this.xs[i]), py(this.ys[i]));
      g.stroke();
      if (this.n < w / 4) for (let i = 0; i < this.n; i++) g.fillRect(px(this.xs[i]) - 1.5, py(this.ys[i]) - 1.5, 3, 3);
    } else {
      // One min–max stroke per pixel column: the whole shape, whatever the point count.
      const cols = Math.ceil(w);
      const lo = new Float64Array(cols).fill(Infinity);
      const hi = new Float64Array(cols).fill(-Infinity);
      const scale = cols / (x1 - x0);
      for (let i = 0; i < this.n; i++) {
        const c = Math.min(cols - 1, Math.max(0, Math.floor((this.xs[i] - x0) * scale)));
        const y = this.ys[i];
        if (y < lo[c]) lo[c] = y;
        if (y > hi[c]) hi[c] = y;
      }
      g.beginPath();
      for (let c = 0; c < cols; c++) {
        if (lo[c] === Infinity) continue;
        const x = PAD.left + c + 0.5;
        g.moveTo(x, py(hi[c]));
        g.lineTo(x, py(lo[c]) + 0.5);
      }
      g.stroke();
    }
    this.lastDrawMs = performance.now() - t0;
    this.canvas.dataset.points = String(this.size);
    this.canvas.dataset.drawMs = this.lastDrawMs.toFixed(2);
  }
}
