// bufnmf serve: the page. Plain JavaScript, no build step, nothing from outside this server.
// It uploads, asks the server to run the jobs the command line runs, follows their progress
// (server-sent events) and draws, plays and offers their outputs.
"use strict";

// The colours of matplotlib's tab10, as bufnmf's own PNG plots use them.
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
const colour = k => COLOURS[k % COLOURS.length];

const $ = id => document.getElementById(id);
const state = {
  sid: null, config: null, source: null, kit: null,
  job: null,          // the page's current job (public state)
  result: null,       // the result view shown
  data: null,         // {bases, activations, parts: [AudioBuffer], events}
  channel: 0,
  view: {t0: 0, t1: 1},
  timings: {},
};
window.bufnmf = state;  // for the curious (and the browser tests): state.timings

// ------------------------------------------------------------------------------------------
// small helpers

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}
function fmtTime(t) {
  const m = Math.floor(t / 60);
  return `${m}:${(t - 60 * m).toFixed(1).padStart(4, "0")}`;
}
function ordinal(n) { return n + (n === 1 ? "st" : n === 2 ? "nd" : n === 3 ? "rd" : "th"); }

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
  if (message) box.scrollIntoView({block: "nearest"});
}
function showWarnings(list) {
  const box = $("warnings");
  box.textContent = (list || []).join("\n");
  box.hidden = !(list && list.length);
}
function setStatus(text, st) {
  $("job-status").textContent = text;
  $("progress").dataset.state = st || "";
}

async function api(path, options) {
  const res = await fetch(path, options);
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) throw new Error((body && body.error) || `${res.status} ${res.statusText}`);
  return body;
}
const sessionUrl = p => `/api/sessions/${state.sid}${p}`;

// ------------------------------------------------------------------------------------------
// session and live events

async function start() {
  state.config = await api("/api/config");
  $("version").textContent = state.config.version;
  $("upload-limit").textContent = `WAV, AIFF, FLAC, OGG or MP3, up to ${state.config.max_upload_text}`;
  const s = await api("/api/sessions", {method: "POST"});
  state.sid = s.id;
  listen();
  window.addEventListener("pagehide", () => navigator.sendBeacon(sessionUrl("/end")));
  watchServer();
}

function listen() {
  const es = new EventSource(sessionUrl("/events"));
  es.addEventListener("job", ev => onJob(JSON.parse(ev.data)));
  es.addEventListener("bye", () => { es.close(); setServer("the server stopped: reload the page when it is back", "off"); });
  es.onerror = async () => {
    setServer("connection lost: retrying…", "off");
    try {
      await api(sessionUrl(""));
    } catch (e) {
      if (/session has ended/.test(e.message)) {  // the server restarted: this page's files are gone
        es.close();
        setServer("the server restarted: reload the page", "off");
        showError(e.message);
      }
    }
  };
  es.onopen = () => watchServer();
}

function setServer(text, st) {
  const el = $("server-status");
  el.textContent = text;
  el.dataset.state = st;
}

async function watchServer() {
  try {
    const c = await api("/api/config");
    if (c.broken) {
      setServer("cannot run jobs", "off");
      showError(c.broken);
      return;
    }
    if (c.workers_ready > 0) {
      setServer(`ready · ${c.max_jobs} job${c.max_jobs > 1 ? "s" : ""} at once`, "ready");
      return;
    }
    setServer("starting its workers…", "busy");
  } catch (e) {
    setServer("cannot reach the server", "off");
  }
  setTimeout(watchServer, 500);
}

// ------------------------------------------------------------------------------------------
// choosing a sound and a kit

function upload(file, role, into, onProgress) {
  return new Promise((resolve, reject) => {
    const limit = state.config.max_upload;
    if (file.size > limit) {
      reject(new Error(`${file.name} is ${fmtBytes(file.size)}, more than ${fmtBytes(limit)}, the most this ` +
        "server takes (--max-upload): use a shorter or compressed sound, or restart 'bufnmf serve' with a larger " +
        "--max-upload"));
      return;
    }
    const q = new URLSearchParams({name: file.name, role});
    if (into) q.set("into", into);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", sessionUrl(`/uploads?${q}`));
    xhr.upload.onprogress = ev => { if (ev.lengthComputable && onProgress) onProgress(ev.loaded / ev.total); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new Error((body && body.error) || `upload failed (${xhr.status})`));
    };
    xhr.onerror = () => reject(new Error("upload failed: the server cannot be reached"));
    xhr.send(file);
  });
}

async function chooseSource(file) {
  if (!file) return;
  showError("");
  const chosen = $("source-chosen");
  chosen.hidden = false;
  chosen.textContent = `${file.name} · uploading…`;
  $("progress").removeAttribute("value");
  setStatus(`Uploading ${file.name}…`, "uploading");
  try {
    const up = await upload(file, "source", null, f => {
      $("progress").value = f;
      chosen.textContent = `${file.name} · uploading ${(100 * f).toFixed(0)} %`;
    });
    state.source = {id: up.id, name: up.files[0], size: file.size};
    chosen.textContent = `${up.files[0]} · ${fmtBytes(file.size)}`;
    chosen.dataset.uploaded = "1";
    $("progress").value = 0;
    setStatus("Ready: set the decomposition and run.", "ready");
  } catch (e) {
    state.source = null;
    chosen.textContent = file.name;
    chosen.dataset.uploaded = "";
    $("progress").value = 0;
    setStatus("", "");
    showError(e.message);
  }
}

async function chooseKit(files) {
  if (!files || !files.length) return;
  showError("");
  const chosen = $("kit-chosen");
  chosen.hidden = false;
  chosen.textContent = "uploading…";
  try {
    // the buffer first, then its .json beside it
    const ordered = [...files].sort((a, b) => (a.name.endsWith(".json") ? 1 : 0) - (b.name.endsWith(".json") ? 1 : 0));
    let up = null;
    for (const f of ordered) up = await upload(f, "kit", up && up.id);
    state.kit = {id: up.id, files: up.files};
    const hasJson = up.files.some(f => f.toLowerCase().endsWith(".json"));
    chosen.textContent = up.files.join(" + ") + (hasJson ? "" : " (no .json: bases only, no tracking)");
    chosen.dataset.uploaded = "1";
    $("kit-clear").hidden = false;
    $("components").placeholder = "the kit's";
    $("components").value = "";
  } catch (e) {
    state.kit = null;
    chosen.textContent = "";
    chosen.hidden = true;
    showError(e.message);
  }
}

function clearKit() {
  state.kit = null;
  $("kit-input").value = "";
  $("kit-chosen").hidden = true;
  $("kit-clear").hidden = true;
  $("components").placeholder = "";
  if (!$("components").value) $("components").value = 3;
}

// ------------------------------------------------------------------------------------------
// running

const SINES_FIELDS = ["detection_threshold", "min_track_len", "bandwidth", "birth_low_threshold",
                      "birth_high_threshold", "window_size", "hop_size", "fft_size"];
const NMF_FIELDS = ["components", "iterations", "window_size", "hop_size", "fft_size", "seed", "extra_components"];

function params(kind) {
  const p = {};
  for (const name of kind === "sines" ? SINES_FIELDS : NMF_FIELDS) {
    const v = $(name).value.trim();
    if (v !== "") p[name] = Number.isFinite(Number(v)) ? Number(v) : v;
  }
  if (kind === "sines" && $("track_method").value !== "greedy") p.track_method = $("track_method").value;
  if (kind !== "sines" && state.kit) p.bases_mode = $("bases_mode").value;
  return p;
}

function showProcess() {
  const sines = $("process").value === "sines";
  document.querySelectorAll(".nmf-only").forEach(el => { el.hidden = sines; });
  document.querySelectorAll(".sines-only").forEach(el => { el.hidden = !sines; });
}

async function submit(body) {
  showError("");
  showWarnings([]);
  state.timings = {run_clicked: performance.now()};
  $("run-button").disabled = true;
  $("demo-button").disabled = true;
  setStatus("Checking…", "checking");
  $("progress").value = 0;
  try {
    const job = await api(sessionUrl("/jobs"), {method: "POST", headers: {"content-type": "application/json"},
                                                  body: JSON.stringify(body)});
    state.job = job;
    onJob(job);
  } catch (e) {
    showError(e.message);
    setStatus("Not run: see the message below.", "error");
    $("run-button").disabled = false;
    $("demo-button").disabled = false;
  }
}

function run() {
  if (!state.source) {
    showError("choose a sound first: drop or pick a file, or try the demo loop");
    return;
  }
  const kind = $("process").value;
  if (kind === "sines") submit({kind, source: state.source.id, params: params(kind)});
  else submit({kind, source: state.source.id, kit: state.kit ? state.kit.id : null, params: params(kind)});
}

function onJob(job) {
  if (!state.job || job.id !== state.job.id) return;
  state.job = job;
  const prog = $("progress");
  const active = job.state === "queued" || job.state === "running";
  $("cancel-button").disabled = !active;
  $("run-button").disabled = active;
  $("demo-button").disabled = active;
  const mem = job.memory ? ` · needs about ${job.memory}` : "";
  if (job.state === "queued") {
    prog.value = 0;
    const why = job.waiting_for_memory ? "waiting for memory beside the running jobs" :
      (job.position ? `${ordinal(job.position)} in line, waiting for a free worker` : "waiting for a worker");
    setStatus(`Queued: ${why}${mem}`, "queued");
  } else if (job.state === "running") {
    if (job.stage === "running" && job.total > 0) {
      prog.value = job.done / job.total;
      setStatus(`Running: ${job.done} / ${job.total} ${job.kind === "sines" ? "frames" : "iterations"}${mem}`, "running");
    } else {
      if (job.stage === "tracking") prog.removeAttribute("value");
      const what = {starting: "Starting", tracking: "Finding the kit's hits", cancelling: "Cancelling"}[job.stage] || "Running";
      setStatus(`${what}…${mem}`, "running");
    }
  } else if (job.state === "done") {
    prog.value = 1;
    setStatus(`Done in ${job.seconds != null ? job.seconds.toFixed(2) : "?"} s · loading the result…`, "done");
    loadResult(job.id).catch(e => showError(`the result could not be shown: ${e.message}`));
  } else if (job.state === "error") {
    prog.value = 0;
    setStatus("Failed: see the message below.", "error");
    showError(job.message);
  } else if (job.state === "cancelled") {
    prog.value = 0;
    setStatus("Cancelled: nothing was written.", "cancelled");
  }
}

async function cancel() {
  if (!state.job) return;
  try { await api(sessionUrl(`/jobs/${state.job.id}/cancel`), {method: "POST"}); } catch (e) { showError(e.message); }
}

// ------------------------------------------------------------------------------------------
// the result

async function fetchBuffer(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return res.arrayBuffer();
}

async function decode(url, sampleRate, channels) {
  const ctx = new OfflineAudioContext(Math.max(1, channels), 1, sampleRate);  // decodes at the file's own rate
  return ctx.decodeAudioData(await fetchBuffer(url));
}

async function loadResult(jobId) {
  const info = await api(sessionUrl(`/jobs/${jobId}`));
  const r = info.result;
  const [bases, acts, events, tracks, parts] = await Promise.all([
    r.bases ? fetchBuffer(r.bases).then(parseNpy) : null,
    r.activations ? fetchBuffer(r.activations).then(parseNpy) : null,
    r.events ? api(r.events) : null,
    r.tracks ? fetch(r.tracks).then(res => res.text()).then(parseTracks) : null,
    Promise.all(r.parts.map(p => decode(p.url, r.sample_rate, r.channels))),
  ]);
  if (!state.job || state.job.id !== jobId) return;  // another run started meanwhile
  stopAudio();
  state.result = r;
  state.data = {bases, acts, events, tracks, parts};
  state.channel = 0;
  if (r.source_upload) {  // the demo's loop is now the sound to decompose
    state.source = {id: r.source_upload.id, name: r.source_upload.name};
    $("source-chosen").hidden = false;
    $("source-chosen").textContent = `${r.source_upload.name} · the demo loop`;
    $("source-chosen").dataset.uploaded = "1";
  }
  renderResult();
  setStatus(`Done in ${info.seconds != null ? info.seconds.toFixed(2) : "?"} s: ${r.parts.length} parts.`, "done");
  state.timings.result_ready = performance.now();
  $("results").dataset.state = "ready";
  $("results").dataset.job = jobId;
}

function renderResult() {
  const r = state.result;
  $("empty").hidden = true;
  $("result").hidden = false;
  $("result-title").textContent = r.title;
  const sines = r.kind === "sines";
  $("bases-card").hidden = sines;
  $("tracks-card").hidden = !sines;
  $("lanes-title").innerHTML = sines ? "Sines and residual <small>each part's waveform</small>" :
    "Activations <small>when each part plays, over its waveform</small>";
  const facts = sines ? sinesFacts(r) : nmfFacts(r);
  $("result-facts").innerHTML = "";

  for (const f of facts) {
    const span = document.createElement("span");
    span.textContent = f;
    $("result-facts").appendChild(span);
  }
  $("commands").textContent = r.commands.join("\n");
  showWarnings(r.warnings);
  const pick = $("channel");
  pick.innerHTML = "";
  for (let c = 0; c < r.channels; c++) pick.add(new Option(`${c + 1}`, String(c)));
  $("channel-pick").hidden = r.channels < 2;
  // legend
  const legend = $("legend");
  legend.innerHTML = "";
  r.parts.forEach((p, k) => {
    const item = document.createElement("span");
    item.className = "key";
    item.innerHTML = `<i style="background:${colour(k)}"></i>`;
    item.append(p.label);
    legend.appendChild(item);
  });
  const dur = state.data.parts.length ? state.data.parts[0].duration : 1;
  state.view = {t0: 0, t1: dur};
  buildMixer();
  buildDownloads();
  drawAll();
}

function nmfFacts(r) {
  const div = r.divergence.length ? r.divergence.map(d => d.toPrecision(4)).join(", ") : "–";
  const facts = [
    `${r.components} components`, `${r.iterations} iterations`, `seed ${r.seed}`,
    `window ${r.window_size} · hop ${r.hop_size} · FFT ${r.fft_size}`,
    `${r.sample_rate} Hz${r.channels > 1 ? ` · ${r.channels} channels` : ""}`,
    `KL divergence ${div}`, `${r.seconds != null ? r.seconds.toFixed(2) : "?"} s (${r.kernel})`,
  ];
  if (r.tracking) facts.push(`${r.tracking.events} hits found (${Object.entries(r.tracking.counts).map(([k, v]) => `${k} ${v}`).join(", ")})`);
  if (r.matches) facts.push("demo: " + r.matches.map(m => `${m.component} ≈ ${m.drum}`).join(", "));
  return facts;
}

function sinesFacts(r) {
  const p = r.parameters;
  const facts = r.per_channel.map(c => `${r.channels > 1 ? `channel ${c.channel + 1}: ` : ""}${c.tracks} tracks, ` +
    `${c.sines_energy_share != null ? (100 * c.sines_energy_share).toFixed(1) : "?"} % of the energy in the sines`);
  facts.push(`detection ${p.detection_threshold} dB`, `min. track ${p.min_track_len} hops`, `bandwidth ${p.bandwidth}`,
             `window ${r.window_size} · hop ${r.hop_size} · FFT ${r.fft_size}`,
             `${r.sample_rate} Hz${r.channels > 1 ? ` · ${r.channels} channels` : ""}`,
             `${r.seconds != null ? r.seconds.toFixed(2) : "?"} s`);
  return facts;
}

function drawAll() {
  if (!state.result) return;
  if (state.result.kind === "sines") drawTracks(); else drawBases();
  drawActivations();
}

/** The time views (lanes and, for sines, the tracks) after a zoom, a move or a tick of the playhead. */
function drawTime() {
  if (state.result && state.result.kind === "sines") drawTracks();
  drawActivations();
}

/** tracks.csv (track_id, frame, time_s, freq_hz, mag_db, channel) -> {channel: Map(track_id -> points)}. */
function parseTracks(text) {
  const lines = text.trim().split("\n");
  const cols = lines[0].split(",");
  const at = name => cols.indexOf(name);
  const [iId, iT, iF, iM, iC] = ["track_id", "time_s", "freq_hz", "mag_db", "channel"].map(at);
  const byChannel = {};
  for (let i = 1; i < lines.length; i++) {
    const v = lines[i].split(",").map(Number);
    const ch = byChannel[v[iC]] || (byChannel[v[iC]] = new Map());
    if (!ch.has(v[iId])) ch.set(v[iId], []);
    ch.get(v[iId]).push([v[iT], v[iF], v[iM]]);
  }
  return byChannel;
}

function drawTracks() {
  const holder = $("tracks-plot");
  const {g, w, h} = setupCanvas(holder);
  const r = state.result;
  const tracks = (state.data.tracks || {})[(r.per_channel[state.channel] || {}).channel ?? state.channel] || new Map();
  const pad = {l: 118, r: 12, t: 8, b: 24};
  const {t0, t1} = state.view;
  const fMin = 30, fMax = r.sample_rate / 2;
  const x = t => pad.l + (t - t0) / (t1 - t0) * (w - pad.l - pad.r);
  const y = f => h - pad.b - Math.log(Math.max(f, fMin) / fMin) / Math.log(fMax / fMin) * (h - pad.t - pad.b);
  g.font = FONT;
  g.fillStyle = AXIS;
  g.textAlign = "right";
  for (const f of [50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]) {
    if (f > fMax) continue;
    g.strokeStyle = GRID;
    g.beginPath(); g.moveTo(pad.l, y(f)); g.lineTo(w - pad.r, y(f)); g.stroke();
    g.fillText(f >= 1000 ? `${f / 1000}k Hz` : `${f} Hz`, pad.l - 8, y(f) + 4);
  }
  const step = niceStep(t1 - t0, w - pad.l - pad.r);
  g.textAlign = "center";
  for (let t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) {
    g.strokeStyle = GRID;
    g.beginPath(); g.moveTo(x(t), pad.t); g.lineTo(x(t), h - pad.b); g.stroke();
    g.fillText(step < 0.1 ? t.toFixed(2) : step < 1 ? t.toFixed(1) : t.toFixed(0), x(t), h - pad.b + 15);
  }
  g.save();
  g.beginPath(); g.rect(pad.l, 0, w - pad.l - pad.r, h); g.clip();
  g.lineWidth = 1.6;
  let drawn = 0;
  for (const [id, pts] of tracks) {
    if (pts[pts.length - 1][0] < t0 || pts[0][0] > t1) continue;
    g.strokeStyle = colour(id);
    g.beginPath();
    pts.forEach(([t, f, m], i) => {
      g.globalAlpha = Math.min(1, Math.max(0.2, (m + 90) / 70));
      if (i === 0) g.moveTo(x(t), y(f)); else g.lineTo(x(t), y(f));
    });
    g.stroke();
    drawn++;
  }
  g.globalAlpha = 1;
  g.restore();
  const now = currentTime();
  if (now > t0 && now < t1) {
    g.strokeStyle = "#111827";
    g.lineWidth = 1.5;
    g.beginPath(); g.moveTo(x(now), pad.t); g.lineTo(x(now), h - pad.b); g.stroke();
  }
  holder.dataset.tracks = String(tracks.size);
  holder.dataset.drawn = String(drawn);
}

// ------------------------------------------------------------------------------------------
// drawing

function setupCanvas(holder) {
  const canvas = holder.querySelector("canvas");
  const w = holder.clientWidth, h = holder.clientHeight;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  return {g, w, h};
}

const AXIS = "#6b7280", GRID = "#e5e7eb", FONT = "11px system-ui, sans-serif";

function drawBases() {
  const holder = $("bases-plot");
  const {g, w, h} = setupCanvas(holder);
  const r = state.result, B = state.data.bases;
  if (!B) return;
  const K = r.components, c = state.channel, sr = r.sample_rate, fft = r.fft_size;
  const useDb = $("bases-db").checked;
  const pad = {l: 46, r: 12, t: 10, b: 26};
  const fMin = Math.max(sr / fft, 10), fMax = sr / 2;
  const x = f => pad.l + (Math.log(f / fMin) / Math.log(fMax / fMin)) * (w - pad.l - pad.r);
  const floorDb = -80;
  const yOf = v => pad.t + (1 - v) * (h - pad.t - pad.b);  // v in 0..1
  g.font = FONT;
  g.lineWidth = 1;
  // grid: frequencies
  g.fillStyle = AXIS;
  g.textAlign = "center";
  for (const f of [20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]) {
    if (f < fMin || f > fMax) continue;
    g.strokeStyle = GRID;
    g.beginPath(); g.moveTo(x(f), pad.t); g.lineTo(x(f), h - pad.b); g.stroke();
    g.fillText(f >= 1000 ? `${f / 1000}k` : `${f}`, x(f), h - pad.b + 14);
  }
  g.textAlign = "right";
  const ticks = useDb ? [0, -20, -40, -60, -80] : [1, 0.75, 0.5, 0.25, 0];
  for (const t of ticks) {
    const v = useDb ? 1 - t / floorDb : t;
    g.strokeStyle = GRID;
    g.beginPath(); g.moveTo(pad.l, yOf(v)); g.lineTo(w - pad.r, yOf(v)); g.stroke();
    g.fillText(useDb ? `${t}` : `${t}`, pad.l - 6, yOf(v) + 4);
  }
  g.save();
  g.translate(11, pad.t + (h - pad.t - pad.b) / 2);
  g.rotate(-Math.PI / 2);
  g.textAlign = "center";
  g.fillText(useDb ? "dB" : "amplitude (peak 1)", 0, 0);
  g.restore();
  g.textAlign = "right";
  g.fillText("Hz", w - pad.r, h - 2);
  // one line per component (columns c * K + k)
  for (let k = 0; k < K; k++) {
    const col = c * K + k;
    let peak = 0;
    for (let i = 1; i < B.rows; i++) peak = Math.max(peak, B.data[i * B.cols + col]);
    if (!(peak > 0)) continue;
    g.strokeStyle = colour(k);
    g.lineWidth = 1.4;
    g.beginPath();
    for (let i = 1; i < B.rows; i++) {
      const f = i * sr / fft;
      if (f < fMin) continue;
      const a = B.data[i * B.cols + col] / peak;
      const v = useDb ? Math.max(0, 1 - (20 * Math.log10(Math.max(a, 1e-12))) / floorDb) : a;
      const px = x(f), py = yOf(v);
      if (i === 1) g.moveTo(px, py); else g.lineTo(px, py);
    }
    g.stroke();
  }
  holder.dataset.drawn = String(K);
}

/** min/max of samples [i0, i1) of `data`, using the 256-sample block pyramid `pyr` for long spans. */
function span(data, pyr, i0, i1) {
  let lo = 0, hi = 0;
  if (i1 - i0 > 2048) {
    const b0 = Math.ceil(i0 / 256), b1 = Math.floor(i1 / 256);
    for (let b = b0; b < b1; b++) { lo = Math.min(lo, pyr.min[b]); hi = Math.max(hi, pyr.max[b]); }
    for (let i = i0; i < Math.min(i1, b0 * 256); i++) { lo = Math.min(lo, data[i]); hi = Math.max(hi, data[i]); }
    for (let i = Math.max(i0, b1 * 256); i < i1; i++) { lo = Math.min(lo, data[i]); hi = Math.max(hi, data[i]); }
  } else {
    for (let i = i0; i < i1; i++) { const v = data[i]; if (v < lo) lo = v; if (v > hi) hi = v; }
  }
  return [lo, hi];
}

function pyramid(data) {
  const n = Math.floor(data.length / 256);
  const min = new Float32Array(n), max = new Float32Array(n);
  let peak = 0;
  for (let b = 0; b < n; b++) {
    let lo = 0, hi = 0;
    for (let i = b * 256; i < (b + 1) * 256; i++) { const v = data[i]; if (v < lo) lo = v; if (v > hi) hi = v; }
    min[b] = lo; max[b] = hi;
    peak = Math.max(peak, -lo, hi);
  }
  for (let i = n * 256; i < data.length; i++) peak = Math.max(peak, Math.abs(data[i]));
  return {min, max, peak};
}

function waveData(k) {
  const buf = state.data.parts[k];
  const c = Math.min(state.channel, buf.numberOfChannels - 1);
  state.data.pyr = state.data.pyr || {};
  const key = `${k}:${c}`;
  if (!state.data.pyr[key]) state.data.pyr[key] = pyramid(buf.getChannelData(c));
  return {data: buf.getChannelData(c), pyr: state.data.pyr[key], rate: buf.sampleRate};
}

function niceStep(seconds, px) {
  const target = seconds / Math.max(1, px / 90);
  const steps = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
  return steps.find(s => s >= target) || 600;
}

function eventColours() {
  const map = {};
  const labels = state.result.labels;
  let next = 0;
  for (const e of state.data.events || []) {
    if (e.label in map) continue;
    const i = labels.indexOf(e.label);
    map[e.label] = colour(i >= 0 ? i : labels.length + next++);
  }
  return map;
}

function drawActivations() {
  const holder = $("activations-plot");
  const r = state.result, A = state.data.acts;
  const K = r.components;
  const events = state.data.events;
  const evH = events ? 30 : 0;
  const laneMin = 64;
  holder.style.height = `${Math.max(220, 34 + evH + K * laneMin)}px`;
  const {g, w, h} = setupCanvas(holder);
  const pad = {l: 118, r: 12, t: 6, b: 24};
  const {t0, t1} = state.view;
  const x = t => pad.l + (t - t0) / (t1 - t0) * (w - pad.l - pad.r);
  const plotW = w - pad.l - pad.r;
  const laneH = (h - pad.t - pad.b - evH) / K;
  g.font = FONT;
  // time grid
  const step = niceStep(t1 - t0, plotW);
  g.textAlign = "center";
  for (let t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) {
    g.strokeStyle = GRID;
    g.beginPath(); g.moveTo(x(t), pad.t); g.lineTo(x(t), h - pad.b); g.stroke();
    g.fillStyle = AXIS;
    g.fillText(step < 0.1 ? t.toFixed(step < 0.01 ? 3 : 2) : step < 1 ? t.toFixed(1) : t.toFixed(0), x(t), h - pad.b + 15);
  }
  g.textAlign = "right";
  g.fillText("s", w - pad.r, h - 3);
  // events lane
  if (events) {
    const cols = eventColours();
    g.fillStyle = AXIS;
    g.textAlign = "right";
    g.fillText("hits", pad.l - 8, pad.t + evH / 2 + 4);
    const labs = Object.keys(cols);
    const rowH = (evH - 6) / Math.max(1, labs.length);
    for (const e of events) {
      const row = labs.indexOf(e.label);
      const xa = Math.max(pad.l, x(e.time)), xb = Math.min(w - pad.r, x(Math.max(e.end, e.time + 0.01)));
      if (xb < pad.l || xa > w - pad.r) continue;
      g.fillStyle = cols[e.label];
      g.globalAlpha = 0.35 + 0.65 * Math.min(1, e.strength);
      g.fillRect(xa, pad.t + row * rowH, Math.max(2, xb - xa), rowH - 1);
      g.globalAlpha = 1;
      g.fillRect(Math.max(pad.l, x(e.time)), pad.t, 1.5, evH - 6);
    }
  }
  g.save();
  g.beginPath(); g.rect(pad.l, 0, plotW, h); g.clip();
  for (let k = 0; k < K; k++) {
    const top = pad.t + evH + k * laneH;
    const mid = top + laneH / 2;
    const half = laneH / 2 - 3;
    g.strokeStyle = GRID;
    g.beginPath(); g.moveTo(pad.l, top + laneH); g.lineTo(w - pad.r, top + laneH); g.stroke();
    // waveform (normalised), as a min/max envelope per pixel
    const wav = waveData(k);
    const scale = wav.pyr.peak > 0 ? half / wav.pyr.peak : 0;
    g.fillStyle = colour(k);
    g.globalAlpha = 0.3;
    for (let px = 0; px < plotW; px++) {
      const ta = t0 + (px / plotW) * (t1 - t0), tb = t0 + ((px + 1) / plotW) * (t1 - t0);
      const i0 = Math.max(0, Math.floor(ta * wav.rate)), i1 = Math.min(wav.data.length, Math.max(i0 + 1, Math.floor(tb * wav.rate)));
      if (i0 >= wav.data.length) break;
      const [lo, hi] = span(wav.data, wav.pyr, i0, i1);
      g.fillRect(pad.l + px, mid - hi * scale, 1, Math.max(1, (hi - lo) * scale));
    }
    g.globalAlpha = 1;
    // activation (peak 1 per channel), from the lane's middle up
    if (A) {
      const col = state.channel * K + k;
      const hop = r.hop_size / r.sample_rate;
      const j0 = Math.max(0, Math.floor(t0 / hop) - 1), j1 = Math.min(A.rows - 1, Math.ceil(t1 / hop) + 1);
      g.strokeStyle = colour(k);
      g.lineWidth = 1.6;
      g.beginPath();
      for (let j = j0; j <= j1; j++) {
        const px = x(j * hop), py = mid - A.data[j * A.cols + col] * half;
        if (j === j0) g.moveTo(px, py); else g.lineTo(px, py);
      }
      g.stroke();
    }
  }
  g.restore();
  // lane labels
  g.textAlign = "right";
  for (let k = 0; k < K; k++) {
    const mid = pad.t + evH + k * laneH + laneH / 2;
    g.fillStyle = colour(k);
    g.fillRect(6, mid - 5, 10, 10);
    g.fillStyle = "#111827";
    g.font = "12px system-ui, sans-serif";
    let label = r.parts[k] ? r.parts[k].label : `${k + 1}`;
    while (label.length > 2 && g.measureText(label).width > pad.l - 30) label = label.slice(0, -2) + "…";
    g.fillText(label, pad.l - 8, mid + 4);
  }
  // playhead
  const now = currentTime();
  if (now > t0 && now < t1) {
    g.strokeStyle = "#111827";
    g.lineWidth = 1.5;
    g.beginPath(); g.moveTo(x(now), pad.t); g.lineTo(x(now), h - pad.b); g.stroke();
  }
  holder.dataset.channel = String(state.channel);
  holder.dataset.t0 = t0.toFixed(4);
  holder.dataset.t1 = t1.toFixed(4);
  holder.dataset.drawn = String(K);
  state.plotGeom = {pad, w, plotW};
}

// zoom and pan in time
function duration() { return state.data && state.data.parts.length ? state.data.parts[0].duration : 1; }
function setView(t0, t1) {
  const d = duration();
  const minSpan = Math.min(d, 0.02);
  let span = Math.max(minSpan, Math.min(d, t1 - t0));
  t0 = Math.max(0, Math.min(t0, d - span));
  state.view = {t0, t1: t0 + span};
  drawTime();
}
function zoom(factor, at) {
  const {t0, t1} = state.view;
  const c = at != null ? at : (t0 + t1) / 2;
  setView(c - (c - t0) * factor, c + (t1 - c) * factor);
}
function timeAt(ev) {
  const rect = $("activations-plot").getBoundingClientRect();
  const {pad, plotW} = state.plotGeom;
  const fx = (ev.clientX - rect.left - pad.l) / plotW;
  return state.view.t0 + Math.max(0, Math.min(1, fx)) * (state.view.t1 - state.view.t0);
}

function setupPlotEvents() {
  const holder = $("activations-plot");
  holder.addEventListener("wheel", ev => {
    if (!state.result) return;
    ev.preventDefault();
    zoom(ev.deltaY > 0 ? 1.25 : 0.8, timeAt(ev));
  }, {passive: false});
  let drag = null;
  holder.addEventListener("pointerdown", ev => {
    if (!state.result) return;
    drag = {x: ev.clientX, t0: state.view.t0, t1: state.view.t1, moved: false};
    holder.setPointerCapture(ev.pointerId);
  });
  holder.addEventListener("pointermove", ev => {
    if (!drag) return;
    const dx = ev.clientX - drag.x;
    if (Math.abs(dx) > 3) drag.moved = true;
    if (drag.moved) {
      const dt = -dx / state.plotGeom.plotW * (drag.t1 - drag.t0);
      setView(drag.t0 + dt, drag.t1 + dt);
    }
  });
  holder.addEventListener("pointerup", ev => {
    if (drag && !drag.moved) {
      seek(timeAt(ev));
      if (!audio.playing) play(audio.mode || "remix");
    }
    drag = null;
  });
  $("zoom-in").onclick = () => zoom(0.5);
  $("zoom-out").onclick = () => zoom(2);
  $("zoom-fit").onclick = () => setView(0, duration());
}

// ------------------------------------------------------------------------------------------
// listening: one <audio> per part and the source, through Web Audio gains, kept in step

const audio = {ctx: null, nodes: new Map(), playing: false, mode: "remix", position: 0, raf: 0};

function partState(k) {
  const row = document.querySelector(`.part[data-k="${k}"]`);
  return {
    gain: Number(row.querySelector("input[type=range]").value),
    solo: row.querySelector(".solo").getAttribute("aria-pressed") === "true",
    mute: row.querySelector(".mute").getAttribute("aria-pressed") === "true",
  };
}

/** The gain each part has in the remix: its slider, unless muted or another part is soloed. */
function remixGains() {
  const parts = state.result ? state.result.parts.map((_, k) => partState(k)) : [];
  const anySolo = parts.some(p => p.solo);
  return parts.map(p => (p.mute || (anySolo && !p.solo)) ? 0 : p.gain);
}

function elements() { return [$("source-audio"), ...document.querySelectorAll("audio[data-testid=component-audio]")]; }

function ensureGraph() {
  if (!audio.ctx) audio.ctx = new AudioContext();
  for (const el of elements()) {
    if (!audio.nodes.has(el)) {
      const src = audio.ctx.createMediaElementSource(el);
      const gain = audio.ctx.createGain();
      src.connect(gain).connect(audio.ctx.destination);
      audio.nodes.set(el, gain);
    }
  }
}

function applyGains() {
  if (!audio.ctx) return;
  const gains = remixGains();
  const src = $("source-audio");
  audio.nodes.get(src).gain.value = audio.mode === "source" ? 1 : 0;
  document.querySelectorAll("audio[data-testid=component-audio]").forEach((el, k) => {
    audio.nodes.get(el).gain.value = audio.mode === "remix" ? gains[k] : 0;
  });
  document.querySelectorAll(".part").forEach((row, k) => row.classList.toggle("silent", gains[k] === 0));
  $("play-source").classList.toggle("on", audio.playing && audio.mode === "source");
  $("play-remix").classList.toggle("on", audio.playing && audio.mode === "remix");
}

function currentTime() {
  return audio.playing ? $("source-audio").currentTime : audio.position;
}

async function play(mode) {
  if (!state.result) return;
  if (audio.playing && audio.mode === mode) { pauseAudio(); return; }
  ensureGraph();
  await audio.ctx.resume();
  audio.mode = mode;
  applyGains();
  const t = audio.playing ? $("source-audio").currentTime : audio.position;
  const els = elements();
  for (const el of els) el.currentTime = t;
  audio.playing = true;
  await Promise.all(els.map(el => el.play().catch(() => null)));
  applyGains();
  tick();
}

function pauseAudio() {
  audio.position = $("source-audio").currentTime;
  for (const el of elements()) el.pause();
  audio.playing = false;
  cancelAnimationFrame(audio.raf);
  applyGains();
  drawTime();
}

function stopAudio() {
  for (const el of elements()) { el.pause(); }
  audio.playing = false;
  audio.position = 0;
  cancelAnimationFrame(audio.raf);
  if (state.result) { applyGains(); drawTime(); }
  $("clock").textContent = fmtTime(0);
}

function seek(t) {
  audio.position = t;
  if (audio.playing) for (const el of elements()) el.currentTime = t;
  $("clock").textContent = fmtTime(t);
  drawTime();
}

function tick() {
  if (!audio.playing) return;
  const master = $("source-audio");
  const t = master.currentTime;
  for (const el of elements()) {
    if (el !== master && !el.paused && Math.abs(el.currentTime - t) > 0.04) el.currentTime = t;  // keep in step
  }
  if (master.ended) { stopAudio(); return; }
  $("clock").textContent = fmtTime(t);
  // follow the playhead when zoomed in
  const {t0, t1} = state.view;
  if (t > t1 && t1 - t0 < duration()) setView(t - 0.1 * (t1 - t0), t + 0.9 * (t1 - t0));
  else drawTime();
  audio.raf = requestAnimationFrame(tick);
}

function buildMixer() {
  const r = state.result;
  for (const el of elements()) el.pause();
  audio.nodes.clear();
  if (audio.ctx) { audio.ctx.close(); audio.ctx = null; }
  // a new element for the source too: an element joins a Web Audio graph once
  const oldSrc = $("source-audio");
  const src = document.createElement("audio");
  src.id = "source-audio";
  src.dataset.testid = "source-audio";
  src.preload = "auto";
  src.src = r.source.url;
  oldSrc.replaceWith(src);
  src.addEventListener("ended", () => stopAudio());
  const mixer = $("mixer");
  mixer.innerHTML = "";
  r.parts.forEach((p, k) => {
    const row = document.createElement("div");
    row.className = "part";
    row.dataset.k = String(k);
    row.innerHTML = `
      <span class="swatch" style="background:${colour(k)}"></span>
      <span class="name"></span>
      <button type="button" class="tog solo" aria-pressed="false" title="Solo: hear only the soloed parts" data-testid="solo">S</button>
      <button type="button" class="tog mute" aria-pressed="false" title="Mute" data-testid="mute">M</button>
      <input type="range" min="0" max="2" step="0.01" value="1" data-testid="gain" aria-label="gain">
      <span class="db">0.0 dB</span>
      <a class="dl" download title="Download this part"></a>
      <audio data-testid="component-audio" preload="auto"></audio>`;
    row.querySelector(".name").textContent = p.label;
    row.querySelector("a.dl").textContent = `⤓ ${p.file}`;
    row.querySelector("a.dl").href = p.url.replace("?inline=1", "");
    row.querySelector("audio").src = p.url;
    const range = row.querySelector("input[type=range]");
    const db = row.querySelector(".db");
    range.addEventListener("input", () => {
      const v = Number(range.value);
      db.textContent = v > 0 ? `${(20 * Math.log10(v)).toFixed(1)} dB` : "−∞ dB";
      applyGains();
    });
    for (const b of row.querySelectorAll(".tog")) {
      b.addEventListener("click", () => {
        b.setAttribute("aria-pressed", b.getAttribute("aria-pressed") === "true" ? "false" : "true");
        if (audio.mode === "source") audio.mode = "remix";
        applyGains();
      });
    }
    mixer.appendChild(row);
  });
  audio.playing = false;
  audio.position = 0;
  audio.mode = "remix";
  $("clock").textContent = fmtTime(0);
}

function downloadRemix() {
  const r = state.result;
  if (!r) return;
  const gains = remixGains();
  const parts = state.data.parts;
  const n = parts[0].length, C = parts[0].numberOfChannels;
  const out = [];
  for (let c = 0; c < C; c++) {
    const sum = new Float32Array(n);
    parts.forEach((buf, k) => {
      if (!gains[k]) return;
      const x = buf.getChannelData(c);
      for (let i = 0; i < n; i++) sum[i] += gains[k] * x[i];
    });
    out.push(sum);
  }
  const blob = encodeWav(out, parts[0].sampleRate);
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = r.zip_name.replace(/\.zip$/, "") + "-remix.wav";
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 10000);
}

function buildDownloads() {
  const r = state.result;
  const groups = [["parts", "Parts"], ["buffers", "FluCoMa buffers"], ["events", "Hits and MIDI"], ["tracks", "Tracks"],
                  ["other", "Summary and more"]];
  const box = $("downloads");
  box.innerHTML = "";
  for (const [key, title] of groups) {
    const items = r.downloads.filter(d => d.group === key);
    if (!items.length) continue;
    const col = document.createElement("div");
    col.className = "dl-group";
    col.innerHTML = `<h4>${title}</h4>`;
    for (const d of items) {
      const a = document.createElement("a");
      a.href = d.url;
      a.download = d.name;
      a.dataset.testid = `download-${d.name}`;
      a.innerHTML = `<span></span><small>${fmtBytes(d.bytes)}</small>`;
      a.querySelector("span").textContent = d.name;
      col.appendChild(a);
    }
    box.appendChild(col);
  }
  $("download-zip").href = r.zip;
  $("download-zip").setAttribute("download", r.zip_name);
}

// A result's kind chooses its drawings (drawAll): "nmf" the bases and the activations, "sines" the
// tracks and the two parts' waveforms; the players, the remix and the downloads serve any parts.

// ------------------------------------------------------------------------------------------
// wiring

function setup() {
  const input = $("source-input");
  input.addEventListener("change", () => chooseSource(input.files[0]));
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, ev => { ev.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
  drop.addEventListener("drop", ev => {
    ev.preventDefault();
    if (ev.dataTransfer.files.length) chooseSource(ev.dataTransfer.files[0]);
  });
  $("kit-input").addEventListener("change", () => chooseKit($("kit-input").files));
  $("kit-clear").addEventListener("click", clearKit);
  $("process").addEventListener("change", showProcess);
  showProcess();
  $("demo-button").addEventListener("click", () => submit({kind: "demo"}));
  $("run-button").addEventListener("click", run);
  $("cancel-button").addEventListener("click", cancel);
  $("settings").addEventListener("submit", ev => { ev.preventDefault(); run(); });
  $("play-source").addEventListener("click", () => play("source"));
  $("play-remix").addEventListener("click", () => play("remix"));
  $("stop").addEventListener("click", stopAudio);
  $("remix-download").addEventListener("click", downloadRemix);
  $("bases-db").addEventListener("change", drawBases);
  $("channel").addEventListener("change", () => { state.channel = Number($("channel").value); drawAll(); });
  setupPlotEvents();
  let pending = 0;
  window.addEventListener("resize", () => { cancelAnimationFrame(pending); pending = requestAnimationFrame(drawAll); });
  start().catch(e => { setServer("cannot reach the server", "off"); showError(e.message); });
}

setup();
