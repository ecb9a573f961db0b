// The artdet console: every action is one call to the server's JSON endpoints, each one RPC with the
// signed-in token in the Authorization header. The server decides what a role may do; the page only hides
// what the token's roles cannot use.
"use strict";

const $ = selector => document.querySelector(selector);
const state = {token: null, roles: [], info: null, schema: null, datasets: [], models: [], dataset: null,
  pages: [""], page: 0, job: null, watch: null, model: null, detection: null, bitmap: null, thumbs: []};

class ApiError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  return state.token ? {...extra, Authorization: `Bearer ${state.token}`} : extra;
}

async function failure(response) {
  let body = {code: `HTTP ${response.status}`, message: response.statusText};
  try { body = await response.json(); } catch (_) { /* not JSON: keep the status line */ }
  return new ApiError(response.status, body.code, body.message);
}

async function api(method, path, {json, body, contentType} = {}) {
  const init = {method, headers: headers(json !== undefined ? {"Content-Type": "application/json"}
    : contentType ? {"Content-Type": contentType} : {})};
  if (json !== undefined) init.body = JSON.stringify(json);
  if (body !== undefined) init.body = body;
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response;
}

const getJson = async path => (await api("GET", path)).json();
const enc = encodeURIComponent;

function notice(message, kind = "error") {
  const box = $("#notice");
  box.textContent = message;
  box.className = kind;
  box.hidden = !message;
}

async function guarded(action) {
  try {
    notice("");
    return await action();
  } catch (error) {
    notice(error.message);
    if (error.status === 401) signOut();
    return undefined;
  }
}

function element(name, attributes = {}, ...children) {
  const node = document.createElement(name);
  for (const [key, value] of Object.entries(attributes)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

const when = seconds => seconds ? new Date(seconds * 1000).toLocaleString() : "";
const fixed = (value, digits = 3) => value === null || value === undefined ? "–" : Number(value).toFixed(digits);
const mebibytes = bytes => `${(Number(bytes) / 1048576).toFixed(1)} MB`;
const allowed = roles => !roles || roles.split(" ").some(r => state.roles.includes(r)) || state.roles.includes("admin");

// -- sign in ----------------------------------------------------------------------------------------
async function signIn(token) {
  state.token = token;
  try {
    state.info = await getJson("/api/info");
  } catch (error) {
    state.token = null;
    sessionStorage.removeItem("artdet-token");
    notice(error.status === 401 ? "That token is not known to this server." : error.message);
    return;
  }
  sessionStorage.setItem("artdet-token", token);
  state.roles = state.info.roles;
  $("#who").textContent = `signed in: ${state.roles.join(", ")}`;
  $("#sign-in").hidden = true;
  $("#tabs").hidden = false;
  $("#sign-out").hidden = false;
  for (const node of document.querySelectorAll("[data-roles]")) node.hidden = !allowed(node.dataset.roles);
  const first = [...document.querySelectorAll("#tabs button")].find(b => !b.hidden);
  await show(first.dataset.tab);
  performance.mark("artdet-interactive");  // signed in, first page drawn (the console benchmark reads it)
}

function signOut() {
  sessionStorage.removeItem("artdet-token");
  state.token = null;
  stopWatching();
  location.reload();
}

async function show(tab) {
  for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== tab;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("current", button.dataset.tab === tab);
  }
  await guarded(() => ({datasets: loadDatasets, training: loadTraining, models: loadModels, try: loadTry,
    health: loadHealth})[tab]());
}

// -- datasets ---------------------------------------------------------------------------------------
async function loadDatasets() {
  state.datasets = (await getJson("/api/datasets")).datasets;
  const rows = state.datasets.map(d => element("tr", {"data-dataset": `${d.name}:${d.version}`},
    element("td", {}, d.name), element("td", {}, d.version), element("td", {}, d.statistics.images),
    element("td", {}, d.statistics.boxes), element("td", {}, d.statistics.boxes_per_class.length),
    element("td", {}, when(d.created_at)),
    element("td", {}, element("button", {onclick: () => guarded(() => browse(d))}, "Browse"),
      allowed("annotator") ? element("button", {onclick: () => guarded(() => deleteDataset(d))}, "Delete") : "")));
  $("#dataset-table tbody").replaceChildren(...rows);
}

async function deleteDataset(dataset) {
  if (!confirm(`Delete dataset ${dataset.name} v${dataset.version}?`)) return;
  await api("DELETE", `/api/datasets/${enc(dataset.name)}/${dataset.version}`);
  $("#dataset-detail").hidden = true;
  await loadDatasets();
}

async function browse(dataset) {
  state.dataset = dataset;
  state.pages = [""];
  state.page = 0;
  $("#dataset-detail").hidden = false;
  $("#dataset-title").textContent = `${dataset.name} v${dataset.version}`;
  const counts = dataset.statistics.boxes_per_class;
  charts.barChart($("#class-chart"), counts.map(c => c.name), [{name: "boxes", values: counts.map(c => c.boxes)}]);
  await showPage();
}

async function thumbnailUrl(dataset, image) {
  const response = await api("GET", `/api/datasets/${enc(dataset.name)}/${dataset.version}/images/${image.id}`
    + "?max_side=320");
  return URL.createObjectURL(await response.blob());
}

async function showPage() {
  const dataset = state.dataset;
  const token = state.pages[state.page];
  const page = await getJson(`/api/datasets/${enc(dataset.name)}/${dataset.version}/images?page_size=12`
    + `&page_token=${enc(token)}`);
  if (page.next_page_token && state.pages.length === state.page + 1) state.pages.push(page.next_page_token);
  $("#page-prev").disabled = state.page === 0;
  $("#page-next").disabled = !page.next_page_token;
  const first = state.page * 12;
  $("#page-info").textContent = ` images ${first + 1}–${first + page.images.length} of ${page.total} `;
  state.thumbs.forEach(url => URL.revokeObjectURL(url));
  state.thumbs = [];
  const tiles = [];
  for (const image of page.images) {
    const url = await thumbnailUrl(dataset, image);
    state.thumbs.push(url);
    const overlay = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    overlay.setAttribute("viewBox", `0 0 ${image.width} ${image.height}`);
    overlay.setAttribute("preserveAspectRatio", "none");
    for (const box of image.boxes) {
      const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      const b = box.box;
      for (const [k, v] of Object.entries({x: b.x1, y: b.y1, width: b.x2 - b.x1, height: b.y2 - b.y1,
        class: "gt-box"})) rect.setAttribute(k, v);
      const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = box.label;
      rect.appendChild(title);
      overlay.appendChild(rect);
    }
    tiles.push(element("figure", {class: "thumb", "data-image": image.id},
      element("div", {class: "frame"}, element("img", {src: url, alt: image.file_name}), overlay),
      element("figcaption", {}, `${image.file_name.split("/").pop()} · ${image.boxes.length} boxes`)));
  }
  $("#thumbs").replaceChildren(...tiles);
}

function upload(event) {
  event.preventDefault();
  const files = $("#upload-files").files;
  const name = $("#upload-name").value.trim();
  if (!files.length) { notice("Choose the dataset's files first."); return; }
  const form = new FormData();
  for (const file of files) form.append("files", file, file.webkitRelativePath || file.name);
  const request = new XMLHttpRequest();
  const bar = $("#upload-progress");
  bar.hidden = false;
  bar.value = 0;
  $("#upload-problems").hidden = true;
  $("#upload-status").textContent = "sending…";
  request.upload.onprogress = e => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
  request.upload.onload = () => { $("#upload-status").textContent = "validating on the server…"; };
  request.onload = async () => {
    bar.hidden = true;
    let body = {};
    try { body = JSON.parse(request.responseText); } catch (_) { body = {message: request.statusText}; }
    if (request.status === 200) {
      $("#upload-status").textContent = body.reused
        ? `already there: ${body.name} v${body.version} (same content)`
        : `uploaded ${body.name} v${body.version}: ${body.statistics.images} images, ${body.statistics.boxes} boxes`;
      await guarded(loadDatasets);
    } else {
      $("#upload-status").textContent = `refused (${body.code || request.status})`;
      const problems = $("#upload-problems");
      problems.textContent = body.message || request.statusText;
      problems.hidden = false;
    }
  };
  request.onerror = () => { bar.hidden = true; $("#upload-status").textContent = "the connection failed"; };
  request.open("POST", `/api/datasets?name=${enc(name)}`);
  if (state.token) request.setRequestHeader("Authorization", `Bearer ${state.token}`);
  request.send(form);
}

// -- training ---------------------------------------------------------------------------------------
async function loadTraining() {
  if (!state.schema) {
    state.schema = await getJson("/api/schema");
    $("#job-fields").replaceChildren(...state.schema.fields.map(field => {
      const input = field.choices.length
        ? element("select", {name: field.name}, ...field.choices.map(c => element("option",
          {value: c, selected: c === field.default}, c)))
        : element("input", {name: field.name, type: field.kind === "int" || field.kind === "float" ? "number" : "text",
          step: field.kind === "int" ? 1 : "any", min: field.min, max: field.max,
          placeholder: field.default === null ? "default" : String(field.default)});
      input.dataset.kind = field.kind;
      return element("label", {title: field.help}, field.name.replaceAll("_", " "), input);
    }));
  }
  const [datasets, models] = await Promise.all([getJson("/api/datasets"), getJson("/api/models")]);
  state.datasets = datasets.datasets;
  $("#job-dataset").replaceChildren(...state.datasets.map(d => element("option",
    {value: `${d.name}:${d.version}`}, `${d.name} v${d.version}`)));
  $("#job-weights").replaceChildren(...state.schema.weights.map(w => element("option", {value: w},
    w === "coco" ? "COCO weights" : "random (no pretraining)")),
    ...models.models.map(m => element("option", {value: `model:${m.name}:${m.version}`},
      `model ${m.name} v${m.version}`)));
  await loadJobs();
}

async function loadJobs() {
  const jobs = (await getJson("/api/jobs")).jobs;
  $("#job-table tbody").replaceChildren(...jobs.map(job => element("tr",
    {"data-job": job.id, onclick: () => guarded(() => watch(job.id))},
    element("td", {}, job.id), element("td", {class: `state ${job.state}`}, job.state.replace("JOB_STATE_", "")
      .toLowerCase()),
    element("td", {}, `${job.dataset_name} v${job.dataset_version}`),
    element("td", {}, job.model_version ? `${job.model_name} v${job.model_version}` : job.model_name),
    element("td", {}, when(job.created_at)))));
}

async function startJob(event) {
  event.preventDefault();
  const [datasetName, datasetVersion] = $("#job-dataset").value.split(/:(?=\d+$)/);
  const request = {dataset_name: datasetName, dataset_version: Number(datasetVersion),
    model_name: $("#job-model").value.trim(), parameters: {}};
  const start = $("#job-weights").value;
  if (start.startsWith("model:")) {
    const [, name, version] = start.split(":");
    request.base_model = {name, version: Number(version)};
  } else request.weights = start;
  for (const input of document.querySelectorAll("#job-fields [name]")) {
    const field = state.schema.fields.find(f => f.name === input.name);
    if (input.value === "" || input.value === String(field.default)) continue;
    request.parameters[input.name] = input.dataset.kind === "int" || input.dataset.kind === "float"
      ? Number(input.value) : input.value;
  }
  const job = await (await api("POST", "/api/jobs", {json: request})).json();
  await loadJobs();
  await watch(job.id);
}

function stopWatching() {
  if (state.watch) state.watch.abort();
  state.watch = null;
}

function resetJobView(id) {
  state.job = {id, losses: [], lrs: [], maps: [], baseline: null, drawn: 0, state: ""};
  $("#job-detail").hidden = false;
  $("#job-title").textContent = `job ${id}`;
  $("#job-log").hidden = true;
  $("#job-progress").textContent = "";
  $("#job-eta").textContent = "";
}

function drawJob() {
  const job = state.job;
  const sample = points => points.length > 1500 ? points.filter((_, i) => i % Math.ceil(points.length / 1500) === 0)
    : points;
  charts.lineChart($("#loss-chart"), [{name: "loss", points: sample(job.losses)}], {xLabel: "iteration"});
  charts.lineChart($("#lr-chart"), [{name: "lr", points: sample(job.lrs)}], {xLabel: "iteration"});
  const series = [{name: "mAP", points: job.maps, markers: true}];
  if (job.baseline !== null) {
    const xs = job.maps.length ? job.maps.map(p => p[0]) : [0, 1];
    series.push({name: "before", points: [[Math.min(0, ...xs), job.baseline], [Math.max(...xs), job.baseline]],
      dashed: true});
  }
  charts.lineChart($("#map-chart"), series, {yFromZero: true, xLabel: "epoch", empty: "no evaluation yet"});
  job.drawn = Date.now();
}

function onEvent(event) {
  const job = state.job;
  const payload = event.payload_json ? JSON.parse(event.payload_json) : {};
  const stateName = (event.state || "").replace("JOB_STATE_", "").toLowerCase();
  job.state = stateName;
  $("#job-state").textContent = stateName;
  $("#job-state").className = `state ${stateName}`;
  if (event.type === "step") {
    const total = Object.values(event.losses || {}).reduce((a, b) => a + b, 0);
    job.losses.push([Number(event.iteration), total]);
    job.lrs.push([Number(event.iteration), event.lr]);
    $("#job-progress").textContent = `${event.stage} · epoch ${event.epoch + 1} · step ${event.step}/`
      + `${event.steps_per_epoch}`;
    $("#job-eta").textContent = event.eta_seconds ? `· about ${Math.ceil(event.eta_seconds / 60)} min left` : "";
  } else if (event.type === "baseline") {
    job.baseline = payload.metrics.map;
  } else if (event.type === "evaluated") {
    job.maps.push([payload.metrics.global_epoch ?? job.maps.length + 1, payload.metrics.map]);
  } else if (event.type === "exporting") {
    $("#job-progress").textContent = "exporting to ONNX and checking it against PyTorch";
    $("#job-eta").textContent = "";
  } else if (event.type === "registered") {
    $("#job-progress").textContent = `registered as ${payload.model_name} v${payload.model_version}`;
  }
  $("#job-cancel").hidden = !["queued", "running"].includes(stateName);
  if (Date.now() - job.drawn > 250 || event.type !== "step") drawJob();
  document.dispatchEvent(new CustomEvent("artdet:shown", {detail: {type: event.type, time: event.time}}));
}

async function watch(id) {
  stopWatching();
  resetJobView(id);
  const controller = new AbortController();
  state.watch = controller;
  const response = await fetch(`/api/jobs/${enc(id)}/events`, {headers: headers(), signal: controller.signal});
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const kind = (block.match(/^event: (.*)$/m) || [])[1] || "message";
        const data = (block.match(/^data: (.*)$/m) || [])[1];
        if (data === undefined) continue;  // a keep-alive comment
        if (kind === "error") { const e = JSON.parse(data); notice(`${e.code}: ${e.message}`); }
        else if (kind === "message") onEvent(JSON.parse(data));
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") throw error;
    return;
  }
  drawJob();
  const job = await getJson(`/api/jobs/${enc(id)}`);
  if (job.log_tail) {
    $("#job-log").textContent = `${job.error}\n\n${job.log_tail}`;
    $("#job-log").hidden = false;
  }
  if (state.watch === controller) await loadJobs();
}

// -- models -----------------------------------------------------------------------------------------
async function loadModels() {
  state.models = (await getJson("/api/models")).models;
  $("#model-table tbody").replaceChildren(...state.models.map(m => {
    const metrics = JSON.parse(m.metrics_json || "{}");
    const final = metrics.final || {};
    return element("tr", {"data-model": `${m.name}:${m.version}`, onclick: () => showModel(m)},
      element("td", {}, m.name), element("td", {}, m.version), element("td", {}, m.active ? "active" : ""),
      element("td", {}, fixed(final.map)), element("td", {}, fixed(final.ap50)),
      element("td", {}, mebibytes(m.size_bytes)), element("td", {}, when(m.created_at)), element("td", {}, ""));
  }));
  if (state.model) {
    const again = state.models.find(m => m.name === state.model.name && m.version === state.model.version);
    if (again) showModel(again); else $("#model-detail").hidden = true;
  }
}

function showModel(model) {
  state.model = model;
  const metrics = JSON.parse(model.metrics_json || "{}");
  $("#model-detail").hidden = false;
  $("#model-title").textContent = `${model.name} v${model.version}${model.active ? " (active)" : ""}`;
  $("#model-activate").disabled = model.active;
  $("#model-delete").disabled = model.active;
  const before = (metrics.baseline || {}).per_class_ap || {};
  const after = metrics.per_class_ap || {};
  charts.barChart($("#ap-chart"), model.class_names, [
    {name: "AP before fine-tuning", values: model.class_names.map(c => before[c] ?? null)},
    {name: "AP fine-tuned", values: model.class_names.map(c => after[c] ?? null)}], {yMax: 1});
  const strategy = metrics.strategy || {};
  const warm = Object.keys(metrics.warm_started_classes || {});
  $("#model-strategy").replaceChildren(
    element("p", {}, `mAP ${fixed((metrics.final || {}).map)} (before ${fixed((metrics.baseline || {}).map)}), `
      + `AP50 ${fixed((metrics.final || {}).ap50)}; strategy ${strategy.strategy || "–"}`),
    element("ul", {}, ...(strategy.reasons || []).map(r => element("li", {}, r))),
    element("p", {}, warm.length ? `warm-started from the pretrained detector: ${warm.join(", ")}`
      : "no class warm-started from the pretrained detector"));
  $("#model-variants tbody").replaceChildren(...(model.variants || []).map(v => element("tr",
    {"data-variant": v.kind},
    element("td", {}, v.kind), element("td", {}, mebibytes(v.size_bytes)), element("td", {}, fixed(v.ap50)),
    element("td", {}, fixed(v.map)), element("td", {}, `${Math.round(v.latency_ms_p50)} ms`),
    element("td", {}, v.refused ? `not kept: ${v.refused}`
      : element("button", {type: "button", "data-download": v.kind}, "Download")))));
  const info = Object.fromEntries(model.class_info.map(c => [c.name, c.description]));
  $("#descriptions").replaceChildren(...model.class_names.map(name => element("label", {}, name,
    element("textarea", {name, rows: 2, maxlength: 2000}, info[name] || ""))));
}

async function modelAction(action) {
  const model = state.model;
  const path = `/api/models/${enc(model.name)}/${model.version}`;
  if (action === "activate") await api("POST", `${path}/activate`);
  if (action === "rollback") await api("POST", `/api/models/${enc(model.name)}/rollback`);
  if (action === "delete") {
    if (!confirm(`Delete model ${model.name} v${model.version}? Its ONNX file is removed.`)) return;
    await api("DELETE", path);
    state.model = null;
  }
  if (action === "download" || action.startsWith("download:")) {
    const variant = action.split(":")[1] || "";
    const blob = await (await api("GET", `${path}/onnx?variant=${enc(variant)}`)).blob();
    const suffix = {int8: ".int8.onnx", fp16: ".fp16.onnx", ort: ".ort"}[variant] || ".onnx";
    const link = element("a", {href: URL.createObjectURL(blob), download: `${model.name}-v${model.version}${suffix}`});
    document.body.appendChild(link);
    link.click();
    link.remove();
    return;
  }
  await loadModels();
}

async function saveDescriptions(event) {
  event.preventDefault();
  const model = state.model;
  const classInfo = [...document.querySelectorAll("#descriptions textarea")].map(t => ({name: t.name,
    description: t.value}));
  await api("PUT", `/api/models/${enc(model.name)}/${model.version}/classes`, {json: {class_info: classInfo}});
  notice("Descriptions saved.", "ok");
  await loadModels();
}

// -- try it -----------------------------------------------------------------------------------------
async function loadTry() {
  state.info = await getJson("/api/info");
  const names = [...new Set(state.info.models_active.map(m => m.name))];
  const select = $("#try-model");
  const chosen = select.value;
  select.replaceChildren(element("option", {value: ""}, "the server's default"),
    ...names.map(n => element("option", {value: n, selected: n === chosen}, n)));
}

async function detect(file) {
  if (!file) return;
  $("#try-status").textContent = "detecting…";
  const started = performance.now();
  const response = await api("POST", `/api/detect?score_threshold=0.05&model=${enc($("#try-model").value)}`,
    {body: file, contentType: file.type || "application/octet-stream"});
  state.detection = await response.json();
  state.bitmap = await createImageBitmap(file, {imageOrientation: "from-image"});
  const d = state.detection;
  $("#try-status").textContent = `${d.model_name} v${d.model_version} · ${d.width}×${d.height} · `
    + `${Math.round(performance.now() - started)} ms (server ${d.server_time_ms.toFixed(0)} ms)`;
  drawDetections();
}

function drawDetections() {
  const d = state.detection;
  if (!d) return;
  const threshold = Number($("#try-threshold").value);
  $("#try-threshold-value").textContent = threshold.toFixed(2);
  const canvas = $("#try-canvas");
  const bitmap = state.bitmap;
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.hidden = false;
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const scale = bitmap.width / d.width;
  const shown = d.detections.filter(x => x.score >= threshold);
  const labels = [...new Set(d.detections.map(x => x.label))];
  const line = Math.max(2, Math.round(bitmap.width / 300));
  const size = Math.max(12, Math.round(bitmap.width / 45));
  context.font = `${size}px sans-serif`;
  const placed = [];  // label rectangles already drawn: a label goes where it overlaps none, or is left out
  const overlaps = (a, b) => a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
  for (const x of shown) {
    const colour = charts.COLOURS[labels.indexOf(x.label) % charts.COLOURS.length];
    const [x1, y1, x2, y2] = [x.box.x1, x.box.y1, x.box.x2, x.box.y2].map(v => v * scale);
    context.strokeStyle = colour;
    context.lineWidth = line;
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${x.label} ${x.score.toFixed(2)}`;
    const w = context.measureText(text).width + 8, h = size + 6;
    const left = Math.min(Math.max(0, x1), canvas.width - w);
    const spot = [y1 - h, y1, y2, y2 - h].map(top => Math.min(Math.max(0, top), canvas.height - h))
      .map(top => [left, top, left + w, top + h]).find(r => !placed.some(p => overlaps(r, p)));
    if (!spot) continue;
    placed.push(spot);
    context.fillStyle = colour;
    context.fillRect(spot[0], spot[1], w, h);
    context.fillStyle = "#fff";
    context.fillText(text, spot[0] + 4, spot[3] - 5);
  }
  $("#try-detections").replaceChildren(...shown.map(x => element("li", {"data-label": x.label},
    element("strong", {}, `${x.label} ${x.score.toFixed(2)}`), x.description ? ` — ${x.description}` : "")));
  if (!shown.length) {
    $("#try-detections").replaceChildren(element("li", {}, `nothing above ${threshold.toFixed(2)} `
      + "(lower the threshold)"));
  }
}

// -- health -----------------------------------------------------------------------------------------
async function loadHealth() {
  const info = state.info = await getJson("/api/info");
  const refs = list => list.map(m => `${m.name} v${m.version}`).join(", ") || "none";
  const rows = [["server version", info.version], ["your roles", info.roles.join(", ")],
    ["models active", refs(info.models_active)], ["models loaded", refs(info.models_loaded)]];
  if (!info.detect_only) {
    rows.push(["jobs", info.jobs.map(j => `${j.state.replace("JOB_STATE_", "").toLowerCase()} ${j.jobs}`)
      .join(", ")], ["data directory", `${mebibytes(info.data_bytes)} used`]);
  }
  rows.push(["free disk", mebibytes(info.free_bytes)]);
  $("#health-list").replaceChildren(...rows.flatMap(([k, v]) => [element("dt", {}, k),
    element("dd", {"data-field": k}, v)]));
}

// -- wiring -----------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("#sign-in-form").addEventListener("submit", e => { e.preventDefault(); signIn($("#token").value.trim()); });
  $("#sign-out").addEventListener("click", signOut);
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => show(button.dataset.tab));
  }
  $("#upload-form").addEventListener("submit", upload);
  $("#page-prev").addEventListener("click", () => { state.page -= 1; guarded(showPage); });
  $("#page-next").addEventListener("click", () => { state.page += 1; guarded(showPage); });
  $("#job-form").addEventListener("submit", e => guarded(() => startJob(e)));
  $("#job-cancel").addEventListener("click", () => guarded(() => api("POST",
    `/api/jobs/${enc(state.job.id)}/cancel`)));
  for (const action of ["activate", "rollback", "delete", "download"]) {
    $(`#model-${action}`).addEventListener("click", () => guarded(() => modelAction(action)));
  }
  $("#model-variants").addEventListener("click", e => {
    const kind = e.target.dataset && e.target.dataset.download;
    if (kind) guarded(() => modelAction(`download:${kind}`));
  });
  $("#descriptions-form").addEventListener("submit", e => guarded(() => saveDescriptions(e)));
  $("#try-file").addEventListener("change", e => guarded(() => detect(e.target.files[0])));
  const drop = $("#drop");
  drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", e => {
    e.preventDefault();
    drop.classList.remove("over");
    guarded(() => detect(e.dataTransfer.files[0]));
  });
  $("#try-threshold").addEventListener("input", drawDetections);
  setInterval(() => { if (!$("#health").hidden) guarded(loadHealth); }, 10000);
  const saved = sessionStorage.getItem("artdet-token");
  if (saved !== null) signIn(saved);
  document.body.dataset.ready = "true";
});
