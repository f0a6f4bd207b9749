const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                "#7f7f7f", "#bcbd22"];
const W = 600, H = 280, L = 62, R = 14, T = 10, B = 30;
const ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"};
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ENTITIES[c]);
const fmt = (v) => {
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(1) : String(+v.toPrecision(3));
};

const fmtStep = (x) => {  // 20000 -> 20k, 1500000 -> 1.5M: step labels stay short
  if (x >= 1e6) return `${+(x / 1e6).toPrecision(3)}M`;
  return x >= 1e4 ? `${+(x / 1e3).toPrecision(3)}k` : String(x);
};

function ticks(lo, hi, n) {  // about n "nice" values (1, 2 or 5 times a power of ten apart) in [lo, hi]
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function logTicks(lo, hi) {  // log10 of 1-2-5, else 1-3, else 1 times the powers of ten in [10^lo, 10^hi]
  let out = [];
  for (const ms of [[1, 2, 5], [1, 3], [1]]) {
    out = [];
    for (let k = Math.floor(lo); k <= Math.ceil(hi); k++) {
      for (const m of ms) if (k + Math.log10(m) >= lo && k + Math.log10(m) <= hi) out.push(k + Math.log10(m));
    }
    if (out.length <= 7) return out;
  }
  return out.filter((v, i) => i % Math.ceil(out.length / 7) === 0);
}

function range(values) {  // a loop, not Math.min(...values): a long run has more values than call arguments
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
  return [lo, hi];
}

function thin(pts, sx) {  // a long series: the first, lowest, highest and last point of each pixel column
  if (pts.length <= 4 * (W - L - R)) return pts;
  const out = [];
  let column = null, bucket = [];
  const flush = () => {
    const finite = bucket.filter((p) => p[1] !== null);
    if (finite.length) {
      const lo = finite.reduce((a, p) => (p[1] < a[1] ? p : a));
      const hi = finite.reduce((a, p) => (p[1] > a[1] ? p : a));
      out.push(...[finite[0], lo, hi, finite[finite.length - 1]].sort((a, b) => a[0] - b[0]));
    }
    if (finite.length < bucket.length) out.push([bucket[0][0], null]);  // keep the gap
    bucket = [];
  };
  for (const p of pts) {
    const c = Math.round(sx(p[0]));
    if (c !== column) { flush(); column = c; }
    bucket.push(p);
  }
  flush();
  return out;
}

function drawChart(figure, series, steps) {  // steps: the x range, shared by every chart
  const names = figure.dataset.series.split(","), log = figure.dataset.log === "1";
  const f = log ? Math.log10 : (v) => v;
  const points = names.map((n) => (series[n] || []).filter((p) => p[1] === null || !log || p[1] > 0));
  const finite = points.flat().filter((p) => p[1] !== null);
  if (!finite.length) { figure.querySelector(".plot").textContent = "no finite values"; return; }
  const [x0, x1] = steps;
  let [y0, y1] = range(finite.map((p) => f(p[1])));
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const sx = (x) => (L + (x - x0) / (x1 - x0) * (W - L - R)).toFixed(1);
  const sy = (y) => (H - B - (y - y0) / (y1 - y0) * (H - T - B)).toFixed(1);
  let svg = `<svg viewBox="0 0 ${W} ${H}" role="img">`;
  for (const x of ticks(x0, x1, 6)) {
    svg += `<line class="gridline" x1="${sx(x)}" x2="${sx(x)}" y1="${T}" y2="${H - B}"></line>` +
           `<text x="${sx(x)}" y="${H - B + 16}" text-anchor="middle">${fmtStep(x)}</text>`;
  }
  let yticks = log ? logTicks(y0, y1) : ticks(y0, y1, 5);
  if (yticks.length < 2) yticks = ticks(y0, y1, 4);
  for (const y of yticks) {
    svg += `<line class="gridline" x1="${L}" x2="${W - R}" y1="${sy(y)}" y2="${sy(y)}"></line>` +
           `<text x="${L - 6}" y="${+sy(y) + 4}" text-anchor="end">${fmt(log ? Math.pow(10, y) : y)}</text>`;
  }
  svg += `<line class="axis" x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}"></line>` +
         `<line class="axis" x1="${L}" x2="${L}" y1="${T}" y2="${H - B}"></line>` +
         `<text x="${W - R}" y="${H - 2}" text-anchor="end">step</text>`;
  const legend = figure.querySelector(".legend");
  points.map((pts) => thin(pts, sx)).forEach((pts, i) => {
    const color = COLORS[i % COLORS.length];
    let d = "", pen = "M", dots = "";
    for (const [x, y] of pts) {
      if (y === null) { pen = "M"; continue; }  // a non-finite value: a gap in the line
      d += `${pen}${sx(x)} ${sy(f(y))}`; pen = "L";
      if (pts.length <= 40) dots += `<circle cx="${sx(x)}" cy="${sy(f(y))}" r="2.5" fill="${color}"/>`;
    }
    svg += `<path class="series" data-name="${esc(names[i])}" stroke="${color}" d="${d}">` +
           `<title>${esc(names[i])}</title></path>${dots}`;
    const item = document.createElement("li"), swatch = document.createElement("i");
    swatch.style.background = color;
    item.append(swatch, names[i]);
    legend.append(item);
  });
  figure.querySelector(".plot").innerHTML = svg + "</svg>";
}

const grids = JSON.parse(document.getElementById("grid-data").textContent);
function showGrid(kind, index) {
  const steps = grids[kind], box = document.querySelector(`.grid[data-kind="${kind}"]`);
  if (!steps || !box) return;
  const i = Math.max(0, Math.min(steps.length - 1, index < 0 ? steps.length + index : index));
  const image = box.querySelector(".grid-image");
  const slider = box.querySelector(".grid-slider");
  slider.value = i;
  slider.setAttribute("value", i);  // the attribute too: a dumped or saved DOM shows the choice
  box.querySelector(".grid-step").textContent = steps[i].step;
  box.querySelector(".grid-count").textContent = `(${i + 1} of ${steps.length})`;
  image.src = steps[i].src;
  image.dataset.step = steps[i].step;
}

const series = JSON.parse(document.getElementById("metrics-data").textContent);
const steps = range(Object.values(series).flat().map((p) => p[0]));
for (const figure of document.querySelectorAll(".chart")) {
  try { drawChart(figure, series, steps); } catch (err) { note(figure.dataset.group + ": " + err); }
}
for (const slider of document.querySelectorAll(".grid-slider")) {
  slider.addEventListener("input", () => showGrid(slider.dataset.kind, +slider.value));
}
for (const m of location.hash.matchAll(/grid=(\w+):(-?\d+)/g)) showGrid(m[1], +m[2]);
document.body.dataset.rendered = "ok";
