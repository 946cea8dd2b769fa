// The page of `stylecast serve`: styles from /v1/styles, one POST /v1/stylize per photo, strength or style.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { style: null, file: null, resultUrl: null, photoUrl: null, pending: 0, key: "" };

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
  for (const style of styles) {
    const card = document.createElement("button");
    card.className = "style";
    card.type = "button";
    card.dataset.model = style.model;
    const img = document.createElement("img");
    img.alt = style.name;
    if (style.thumbnail) img.src = style.thumbnail;
    const name = document.createElement("strong");
    name.textContent = style.name;
    const detail = document.createElement("small");
    detail.textContent = style.precision;
    card.append(img, name, detail);
    card.addEventListener("click", () => choose(style.model));
    box.append(card);
  }
  if (styles.length) choose(styles[0].model);
  say(styles.length ? "Drop a photo to stylize it." : "No styles loaded.");
}

function choose(model) {
  state.style = model;
  for (const card of document.querySelectorAll(".style")) {
    card.setAttribute("aria-pressed", String(card.dataset.model === model));
  }
  stylize();
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
  if (!state.file || !state.style) return;
  const ticket = ++state.pending;
  const strength = $("strength").value;
  say("Stylizing…");
  const query = new URLSearchParams({ style: state.style, strength });
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
  $("download").download = `${stem}.${response.headers.get("X-Stylecast-Style") || "stylized"}.${ext}`;
  $("download").hidden = false;
  say(`Done: ${response.headers.get("X-Stylecast-Model")} at strength ${Number(strength).toFixed(2)}.`);
}

let strengthTimer = null;
$("strength").addEventListener("input", () => {
  $("strength-value").textContent = Number($("strength").value).toFixed(2);
  clearTimeout(strengthTimer);
  strengthTimer = setTimeout(stylize, 250);
});
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
