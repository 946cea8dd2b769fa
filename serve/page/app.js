// The page of `stylecast serve`: styles from /v1/styles, one POST /v1/stylize per photo, strength, stroke size or
// style, and a blend of two styles of a multi-style model.
"use strict";

const $ = (id) => document.getElementById(id);
// model: the v2 model name sent as ?model=; style: a multi-style model's style or blend, sent as ?style=.
const state = { model: null, style: null, file: null, resultUrl: null, photoUrl: null, pending: 0, key: "" };
const multiStyles = new Map(); // a multi-style model's name -> its styles, in row order

function headers(extra) {
  const all = Object.assign({}, extra);
  if (state.key) all["X-API-Key"] = state.key;
  return all;
}

function say(text, isError) {
  $("status").textContent = text;
  $("status").classList.toggle("error", Boolean(isError));
}

async function errorOf(response) {
  try { return (await response.json()).error || response.statusText; } catch (e) { return response.statusText; }
}

async function loadStyles() {
  const response = await fetch("/v1/styles", { headers: headers() });
  if (response.status === 401) {
    $("key-row").hidden = false;
    say("This server needs an API key.", true);
    return;
  }
  if (!response.ok) { say(await errorOf(response), true); return; }
  const styles = await response.json();
  const box = $("styles");
  box.replaceChildren();
  multiStyles.clear();
  for (const style of styles) {
    if (style.multi_style) multiStyles.set(style.model, [...(multiStyles.get(style.model) || []), style.name]);
    const card = document.createElement("button");
    card.className = "style";
    card.type = "button";
    card.dataset.model = style.model;
    card.dataset.style = style.name;
    const img = document.createElement("img");
    img.alt = style.name;
    if (style.thumbnail) img.src = style.thumbnail;
    const name = document.createElement("strong");
    name.textContent = style.name;
    const detail = document.createElement("small");
    detail.textContent = style.multi_style ? `${style.precision}, ${style.model}` : style.precision;
    card.append(img, name, detail);
    card.addEventListener("click", () => choose(style));
    box.append(card);
  }
  if (styles.length) choose(styles[0]);
  say(styles.length ? "Drop a photo to stylize it." : "No styles loaded.");
}

// What ?style= says for `mix` (0..1) of style b over style a: one style at either end, else both weighed.
function blendChoice(a, b, mix) {
  if (a === b || mix <= 0) return a;
  if (mix >= 1) return b;
  return `${a}=${(1 - mix).toFixed(2)},${b}=${mix.toFixed(2)}`;
}

function press(model, name) {
  for (const card of document.querySelectorAll(".style")) {
    card.setAttribute("aria-pressed", String(card.dataset.model === model && card.dataset.style === name));
  }
}

function fill(select, names, chosen) {
  select.replaceChildren(...names.map((name) => new Option(name, name, false, name === chosen)));
}

// A style card: a single-style model is picked by its name alone; a multi-style model's style also opens the
// blend control on its model's styles, starting from that style alone.
function choose(style) {
  state.model = style.model;
  state.style = style.multi_style ? style.name : null;
  press(style.model, style.name);
  const names = multiStyles.get(style.model);
  $("blend").hidden = !names;
  if (names) {
    fill($("blend-a"), names, style.name);
    fill($("blend-b"), names, names.find((name) => name !== style.name));
    $("blend-mix").value = "0";
    showBlend();
  }
  stylize();
}

function showBlend() {
  const a = $("blend-a").value, b = $("blend-b").value, mix = Number($("blend-mix").value);
  $("blend-value").textContent = a === b ? a : `${a} ${Math.round(100 * (1 - mix))}% · ${b} ${Math.round(100 * mix)}%`;
  state.style = blendChoice(a, b, mix);
  press(state.model, state.style);
}

function setFile(file) {
  if (!file) return;
  state.file = file;
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photoUrl = URL.createObjectURL(file);
  $("photo").src = state.photoUrl;
  stylize();
}

async function stylize() {
  if (!state.file || !state.model) return;
  const ticket = ++state.pending;
  const strength = $("strength").value, stroke = $("stroke").value;
  say("Stylizing…");
  const query = new URLSearchParams({ model: state.model, strength, stroke });
  if (state.style) query.set("style", state.style);
  let response;
  try {
    response = await fetch("/v1/stylize?" + query, {
      method: "POST", body: state.file,
      headers: headers({ "Content-Type": state.file.type || "application/octet-stream" }),
    });
  } catch (e) {
    say("The server cannot be reached.", true);
    return;
  }
  if (ticket !== state.pending) return; // a newer request replaced this one
  if (response.status === 401) { $("key-row").hidden = false; say("This server needs an API key.", true); return; }
  if (!response.ok) { say(await errorOf(response), true); return; }
  const blob = await response.blob();
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = URL.createObjectURL(blob);
  $("result").src = state.resultUrl;
  const stem = state.file.name.replace(/\.[^.]*$/, "") || "photo";
  const ext = (blob.type.split("/")[1] || "png").replace("jpeg", "jpg");
  $("download").href = state.resultUrl;
  const painted = response.headers.get("X-Stylecast-Style") || "stylized";
  $("download").download = `${stem}.${painted}.${ext}`;
  $("download").hidden = false;
  say(`Done: ${response.headers.get("X-Stylecast-Model")} (${painted}) at strength ${Number(strength).toFixed(2)}, ` +
      `stroke size ${Number(stroke).toFixed(2)}.`);
}

// Sliders stylize once they rest, not at every step of a drag.
let sliderTimer = null;
function later() {
  clearTimeout(sliderTimer);
  sliderTimer = setTimeout(stylize, 250);
}

$("strength").addEventListener("input", () => {
  $("strength-value").textContent = Number($("strength").value).toFixed(2);
  later();
});
$("stroke").addEventListener("input", () => {
  $("stroke-value").textContent = Number($("stroke").value).toFixed(2);
  later();
});
$("blend-mix").addEventListener("input", () => { showBlend(); later(); });
for (const id of ["blend-a", "blend-b"]) $(id).addEventListener("change", () => { showBlend(); stylize(); });
$("file").addEventListener("change", () => setFile($("file").files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  setFile(event.dataTransfer.files[0]);
});
$("key").addEventListener("change", () => { state.key = $("key").value; loadStyles(); });
loadStyles();
