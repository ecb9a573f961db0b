// Small SVG charts for the console: lines (curves over steps) and grouped bars (per class). No library.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f6feb", "#d97706", "#15803d", "#b91c1c", "#7c3aed", "#0e7490", "#a16207", "#be185d"];

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes || {})) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function niceNumber(value) {
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  if (magnitude >= 1000 || magnitude < 0.01) return value.toExponential(1);
  return String(Number(value.toPrecision(3)));
}

function frame(container, width, height) {
  container.textContent = "";
  const svg = svgElement("svg", {viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "svg-chart"});
  container.appendChild(svg);
  return svg;
}

// series: [{name, points: [[x, y], ...], dashed}]; a series of one y and no x range is drawn as a level line
function lineChart(container, series, options = {}) {
  const width = 360, height = 200, left = 48, right = 10, top = 10, bottom = 28;
  const svg = frame(container, width, height);
  const points = series.flatMap(s => s.points);
  if (!points.length) {
    svg.appendChild(svgElement("text", {x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty"},
      options.empty || "nothing yet"));
    return svg;
  }
  let [x0, x1] = [Math.min(...points.map(p => p[0])), Math.max(...points.map(p => p[0]))];
  let [y0, y1] = [Math.min(...points.map(p => p[1])), Math.max(...points.map(p => p[1]))];
  if (options.yFromZero) y0 = Math.min(0, y0);
  if (options.yMax !== undefined) y1 = Math.max(y1, options.yMax);
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) y1 = y0 + (Math.abs(y0) || 1) * 0.1;
  const sx = x => left + (x - x0) / (x1 - x0) * (width - left - right);
  const sy = y => top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom);
  svg.appendChild(svgElement("line", {x1: left, y1: height - bottom, x2: width - right, y2: height - bottom,
    class: "axis"}));
  svg.appendChild(svgElement("line", {x1: left, y1: top, x2: left, y2: height - bottom, class: "axis"}));
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    svg.appendChild(svgElement("text", {x: left - 4, y: sy(y) + 4, "text-anchor": "end", class: "tick"},
      niceNumber(y)));
  }
  for (const x of [x0, x1]) {
    svg.appendChild(svgElement("text", {x: sx(x), y: height - bottom + 16, "text-anchor": "middle", class: "tick"},
      niceNumber(x)));
  }
  if (options.xLabel) {
    svg.appendChild(svgElement("text", {x: width - right, y: height - 2, "text-anchor": "end", class: "tick"},
      options.xLabel));
  }
  series.forEach((s, index) => {
    const colour = s.colour || COLOURS[index % COLOURS.length];
    const path = s.points.length === 1 && s.level
      ? `M${left},${sy(s.points[0][1])}H${width - right}`
      : s.points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    svg.appendChild(svgElement("path", {d: path, fill: "none", stroke: colour, "stroke-width": 1.6,
      "stroke-dasharray": s.dashed ? "5 4" : "none", "data-series": s.name}));
    if (s.markers) {
      for (const p of s.points) svg.appendChild(svgElement("circle", {cx: sx(p[0]), cy: sy(p[1]), r: 2.5,
        fill: colour}));
    }
    svg.appendChild(svgElement("text", {x: left + 6 + index * 90, y: top + 10, fill: colour, class: "legend"},
      s.name));
  });
  return svg;
}

// labels: category names; series: [{name, values: [number|null per label]}]
function barChart(container, labels, series, options = {}) {
  const band = 26 * Math.max(1, series.length) + 12;
  const width = Math.max(360, 56 + labels.length * band), height = 220, left = 44, bottom = 46, top = 18;
  const svg = frame(container, width, height);
  const values = series.flatMap(s => s.values).filter(v => v !== null && v !== undefined);
  const yMax = options.yMax !== undefined ? options.yMax : Math.max(1, ...values);
  const sy = v => top + (1 - v / yMax) * (height - top - bottom);
  svg.appendChild(svgElement("line", {x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis"}));
  for (const y of [0, yMax / 2, yMax]) {
    svg.appendChild(svgElement("text", {x: left - 4, y: sy(y) + 4, "text-anchor": "end", class: "tick"},
      niceNumber(y)));
  }
  labels.forEach((label, i) => {
    const x = left + 8 + i * band;
    series.forEach((s, j) => {
      const value = s.values[i];
      if (value === null || value === undefined) return;
      const bar = svgElement("rect", {x: x + j * 26, y: sy(value), width: 22, height: height - bottom - sy(value),
        fill: s.colour || COLOURS[j % COLOURS.length], "data-label": label, "data-series": s.name});
      bar.appendChild(svgElement("title", {}, `${s.name} ${label}: ${niceNumber(value)}`));
      svg.appendChild(bar);
    });
    svg.appendChild(svgElement("text", {x: x + series.length * 13, y: height - bottom + 14, "text-anchor": "middle",
      class: "tick"}, label.length > 12 ? label.slice(0, 11) + "…" : label));
  });
  series.forEach((s, j) => svg.appendChild(svgElement("text", {x: left + 6 + j * 110, y: 12,
    fill: s.colour || COLOURS[j % COLOURS.length], class: "legend"}, s.name)));
  return svg;
}

window.charts = {lineChart, barChart, COLOURS};
