// Charts of the last minutes, drawn as SVG in the page: no external asset, no library.
const SVG = "http://www.w3.org/2000/svg";

// Five minutes of one value a second.
export const POINTS = 300;
// The fewest points the width spans: a chart of the first seconds is not one spike.
const SPAN_AT_LEAST = 60;
const WIDTH = 300;
const HEIGHT = 40;

// The last POINTS values of one quantity (null where it was unknown).
export class Series {
  constructor() {
    this.values = [];
  }

  push(value) {
    this.values.push(value);
    if (this.values.length > POINTS) this.values.shift();
  }
}

// A chart titled `label` with `format` for its numbers, appended to `parent`.
export function chart(parent, name, label, format) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.dataset.chart = name;
  const caption = document.createElement("figcaption");
  caption.append(label, " ");
  const last = document.createElement("b");
  caption.append(last);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const area = document.createElementNS(SVG, "polygon");
  const line = document.createElementNS(SVG, "polyline");
  svg.append(area, line);
  figure.append(caption, svg);
  parent.append(figure);
  figure.format = format;
  return figure;
}

// Draws `series` in `figure`: the newest value at the right edge, scaled to the largest.
export function draw(figure, series) {
  const values = series.values;
  // Only finite values are drawn: a p99 past the largest bucket is shown as text.
  const known = values.filter((value) => Number.isFinite(value));
  const top = Math.max(1e-9, ...known);
  const step = WIDTH / (Math.max(values.length, SPAN_AT_LEAST) - 1);
  const offset = WIDTH - step * (values.length - 1);
  const points = [];
  values.forEach((value, i) => {
    if (!Number.isFinite(value)) return;
    const x = offset + i * step;
    const y = HEIGHT - 2 - ((HEIGHT - 4) * value) / top;
    points.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  });
  figure.querySelector("polyline").setAttribute("points", points.join(" "));
  const floor = points.length ? [`${points.at(-1).split(",")[0]},${HEIGHT}`, `${points[0].split(",")[0]},${HEIGHT}`] : [];
  figure.querySelector("polygon").setAttribute("points", [...points, ...floor].join(" "));
  figure.dataset.points = String(points.length);
  const last = values.at(-1) ?? null;
  figure.dataset.last = last === null ? "" : String(last);
  figure.dataset.top = known.length ? String(Math.max(...known)) : "";
  const caption = last === null ? "–" : last === Infinity ? "over the largest bucket" : figure.format(last);
  figure.querySelector("figcaption b").textContent = caption;
}
