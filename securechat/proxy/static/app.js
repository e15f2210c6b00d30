// The SecureChat chat page. It talks only to the local proxy that served it (same origin): the proxy verifies
// the workers' attestation, seals each prompt to the verified keys and checks every answer frame. This page
// sends nothing while the verification report lists no verified worker. Answers are untrusted model output:
// text is only ever inserted with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { verified: false, busy: false, history: [], controller: null };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function errorText(body, status) {
  const error = body && body.error;
  if (error && typeof error === "object") return `${error.code || error.type}: ${error.message}`;
  return `HTTP ${status}`;
}

async function getJson(path, options) {
  const response = await fetch(path, { cache: "no-store", ...options });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) throw new Error(errorText(body, response.status));
  return body;
}

function setStatus(kind, text) {
  const status = $("status");
  status.className = `status ${kind}`;
  status.textContent = text;
}

function update() {
  const ready = state.verified && !state.busy;
  $("send").disabled = !ready;
  $("prompt").disabled = !state.verified;
  $("stop").disabled = !state.busy;
  for (const id of ["create-collection", "upload", "collection"]) $(id).disabled = !ready;
}

// -- verification -----------------------------------------------------------------------------------------

function formatTime(unixSeconds) {
  return new Date(unixSeconds * 1000).toISOString().replace(".000Z", "Z");
}

function renderReport(report) {
  const workers = $("workers");
  const refusals = $("refusals");
  workers.replaceChildren();
  refusals.replaceChildren();
  const manifest = `${report.manifest.name} release ${report.manifest.release}`;
  for (const worker of report.verified) {
    const item = el("li", "worker");
    item.dataset.workerId = worker.worker_id;
    item.append(el("strong", "worker-id", worker.worker_id));
    item.append(el("div", "detail", `matched ${manifest}`));
    item.append(el("div", "detail", `keys expire ${formatTime(worker.expires_at)}`));
    const sealed = worker.sealed_with;
    const sealing = sealed
      ? `sealed with ${sealed.suite} (${sealed.post_quantum ? "post-quantum hybrid" : "classical"})`
      : "no key of a suite this client seals with";
    item.append(el("div", "detail sealing", sealing));
    const platform = worker.platform;
    item.append(
      el(
        "div",
        "detail platform",
        platform.hardware
          ? `attested by ${platform.name} (${platform.product}, ${platform.signer})`
          : "attested by the simulated platform: no hardware protection (development only)",
      ),
    );
    const registers = el("dl", "registers");
    for (const [name, value] of Object.entries(worker.registers)) {
      registers.append(el("dt", "", name), el("dd", "", value));
    }
    item.append(registers);
    workers.append(item);
  }
  for (const refusal of report.refused) {
    const reason = refusal.register ? `${refusal.reason}:${refusal.register}` : refusal.reason;
    const who = refusal.worker_id ? `${refusal.worker_id} (claimed)` : "unparsed document";
    const item = el("li", "refusal", `refused #${refusal.index} ${who}: ${reason}`);
    item.dataset.reason = reason;
    refusals.append(item);
  }
  const log = report.release_log;
  $("release-log").textContent = log
    ? `release log ${log.origin}: entry ${log.entry} of ${log.size}, cosigned by ${log.witnesses.join(", ") || "no witness"}`
    : "release log: not pinned (the manifest file alone is trusted)";
  const where = `${report.service}, region ${report.region}, tenant ${report.tenant}`;
  const counts = `${report.verified.length} verified, ${report.refused.length} refused`;
  if (report.ok) {
    $("verify-summary").textContent = `${where}: ${counts}. Prompts are sealed to the verified workers only.`;
    setStatus("ok", `verified: ${report.verified.length} worker${report.verified.length === 1 ? "" : "s"}`);
  } else {
    $("verify-summary").textContent = `${where}: ${counts}. No worker passed verification: nothing will be sent.`;
    setStatus("refused", "not verified: nothing is sent");
  }
}

async function verify() {
  setStatus("pending", "verifying…");
  try {
    const report = await getJson("/securechat/attestation");
    renderReport(report);
    state.verified = report.ok === true && report.verified.length > 0;
  } catch (error) {
    state.verified = false;
    $("workers").replaceChildren();
    $("refusals").replaceChildren(el("li", "refusal", `cannot verify: ${error.message}`));
    $("verify-summary").textContent = "The service could not be verified: nothing will be sent.";
    setStatus("refused", "not verified: nothing is sent");
  }
  update();
  return state.verified;
}

// -- sampling settings ------------------------------------------------------------------------------------

function readNumber(id, label, min, max, integer) {
  const raw = $(id).value.trim();
  if (raw === "") return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw new Error(`${label} must be ${integer ? "an integer" : "a number"} from ${min} to ${max}`);
  }
  return value;
}

function readSampling() {
  const sampling = {
    temperature: readNumber("temperature", "temperature", 0, 2, false),
    top_p: readNumber("top-p", "top p", 0.000001, 1, false),
    max_tokens: readNumber("max-tokens", "max tokens", 1, 32768, true),
    seed: readNumber("seed", "seed", 0, Number.MAX_SAFE_INTEGER, true),
  };
  for (const key of Object.keys(sampling)) if (sampling[key] === undefined) delete sampling[key];
  return sampling;
}

// -- conversation -----------------------------------------------------------------------------------------

function notice(text) {
  $("notice").textContent = text;
}

function addMessage(role, text) {
  const item = el("li", `msg ${role}`);
  item.append(el("div", "role", role === "user" ? "You" : "SecureChat"));
  const body = el("div", "text", text);
  item.append(body);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function parseEvent(block, answer) {
  for (const line of block.split("\n")) {
    if (!line.startsWith("data:")) continue;
    const data = line.slice(5).trim();
    if (data === "[DONE]") {
      answer.done = true;
      continue;
    }
    const event = JSON.parse(data);
    if (event.error) throw new Error(errorText(event, 502));
    if (event.usage) answer.usage = event.usage;
    if (event.citations) answer.citations = event.citations;
    const choice = event.choices && event.choices[0];
    const piece = choice && choice.delta && choice.delta.content;
    if (piece) {
      if (answer.firstAt === null) answer.firstAt = performance.now();
      answer.text += piece;
      answer.node.textContent = answer.text;
    }
  }
}

function showMetrics(item, answer, endedAt) {
  const ttftMs = answer.firstAt === null ? null : answer.firstAt - answer.sentAt;
  const totalS = (endedAt - answer.sentAt) / 1000;
  const parts = [ttftMs === null ? "no text" : `TTFT ${Math.round(ttftMs)} ms`];
  if (answer.usage) {
    const tokens = answer.usage.completion_tokens;
    parts.push(`${tokens} tokens (prompt ${answer.usage.prompt_tokens})`);
    if (totalS > 0) parts.push(`${(tokens / totalS).toFixed(1)} tok/s`);
  }
  parts.push(`total ${totalS.toFixed(2)} s`);
  const metrics = el("div", "metrics", parts.join(" · "));
  if (ttftMs !== null) metrics.dataset.ttftMs = String(Math.round(ttftMs));
  if (answer.usage) metrics.dataset.tokens = String(answer.usage.completion_tokens);
  item.append(metrics);
}

function showCitations(item, citations) {
  if (!citations || citations.length === 0) return;
  const list = el("ul", "citations");
  for (const c of citations) {
    const place = [c.filename || c.file_id];
    if (c.page !== null && c.page !== undefined) place.push(`page ${c.page}`);
    if (c.heading) place.push(`“${c.heading}”`);
    const entry = el("li", "citation");
    const label = el("button", "citation-place", `[${c.n}] ${place.join(", ")} (score ${Number(c.score).toFixed(3)})`);
    label.type = "button";
    label.setAttribute("aria-expanded", "false");
    const excerpt = el("blockquote", "citation-excerpt", c.text || "");
    excerpt.hidden = true;
    label.addEventListener("click", () => {  // the excerpt the answer drew on, shown on request
      excerpt.hidden = !excerpt.hidden;
      label.setAttribute("aria-expanded", String(!excerpt.hidden));
    });
    entry.dataset.fileId = c.file_id;
    entry.append(label, excerpt);
    list.append(entry);
  }
  item.append(list);
}

async function readStream(response, answer) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      parseEvent(block, answer);
    }
  }
  if (!answer.done) throw new Error("the answer ended before it was complete");
}

async function send() {
  const prompt = $("prompt").value;
  if (state.busy || prompt.trim() === "") return;
  if (!state.verified) {
    notice("No worker is verified: nothing was sent.");
    return;
  }
  let sampling;
  try {
    sampling = readSampling();
  } catch (error) {
    notice(error.message);
    return;
  }
  state.busy = true;
  update();
  notice("");
  try {
    // Verify again right before sending: the proxy seals this prompt to the keys this check verified.
    if (!(await verify())) {
      notice("No worker passed verification: nothing was sent.");
      return;
    }
    await ask(prompt, sampling);
  } finally {
    state.busy = false;
    state.controller = null;
    update();
  }
}

async function ask(prompt, sampling) {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...state.history, { role: "user", content: prompt });
  const body = { model: "securechat", messages, stream: true, stream_options: { include_usage: true }, ...sampling };
  const collection = $("collection").value;
  if (collection) body.vector_store_ids = [collection];

  $("prompt").value = "";
  addMessage("user", prompt);
  const item = addMessage("assistant", "");
  item.dataset.state = "streaming";
  const answer = { text: "", node: item.querySelector(".text"), sentAt: performance.now(), firstAt: null,
                   usage: null, citations: null, done: false };
  state.controller = new AbortController();
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
      cache: "no-store",
      signal: state.controller.signal,
    });
    if (!response.ok) {
      const error = await response.json().catch(() => null);
      if (error && error.error && error.error.code === "attestation_failed") verify();
      throw new Error(errorText(error, response.status));
    }
    await readStream(response, answer);
  } catch (error) {
    item.dataset.state = "failed";
    const reason = error.name === "AbortError" ? "stopped" : error.message;
    item.append(el("div", "error", `${answer.text ? "incomplete: " : ""}${reason}`));
    $("prompt").value = answer.text ? "" : prompt;
    return;
  }
  showMetrics(item, answer, performance.now());
  showCitations(item, answer.citations);
  item.dataset.state = "done";
  state.history.push({ role: "user", content: prompt }, { role: "assistant", content: answer.text });
}

// -- collections --------------------------------------------------------------------------------------------

function collectionNotice(text, failed = false) {
  $("collection-notice").textContent = text;
  $("collection-notice").classList.toggle("failed", failed);
}

async function loadCollections(select) {
  const picker = $("collection");
  const chosen = select === undefined ? picker.value : select;
  const page = await getJson("/v1/vector_stores");
  picker.replaceChildren(el("option", "", "none"));
  picker.firstChild.value = "";
  for (const store of page.data) {
    const files = store.file_counts.total;
    const option = el("option", "", `${store.name || store.id} (${files} file${files === 1 ? "" : "s"})`);
    option.value = store.id;
    picker.append(option);
  }
  picker.value = [...picker.options].some((o) => o.value === chosen) ? chosen : "";
}

async function createCollection() {
  if (!state.verified) return;
  try {
    const store = await getJson("/v1/vector_stores", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: $("collection-name").value.trim() }),
    });
    $("collection-name").value = "";
    await loadCollections(store.id);
    collectionNotice(`created ${store.name || store.id}`);
  } catch (error) {
    collectionNotice(`could not create: ${error.message}`, true);
  }
}

async function upload() {
  const storeId = $("collection").value;
  const chosen = [...$("files").files];
  if (!state.verified || chosen.length === 0) return;
  if (!storeId) {
    collectionNotice("pick or create a collection first", true);
    return;
  }
  state.busy = true;
  update();
  try {
    for (const file of chosen) {
      collectionNotice(`sealing ${file.name} to the verified workers…`);
      const form = new FormData();
      form.append("file", file, file.name);
      form.append("purpose", "assistants");
      const uploaded = await getJson("/v1/files", { method: "POST", body: form });
      await getJson(`/v1/vector_stores/${encodeURIComponent(storeId)}/files`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ file_id: uploaded.id }),
      });
    }
    $("files").value = "";
    await loadCollections(storeId);
    collectionNotice(`added ${chosen.map((f) => f.name).join(", ")}`);
  } catch (error) {
    collectionNotice(`upload failed: ${error.message}`, true);
  } finally {
    state.busy = false;
    update();
  }
}

// -- wiring -------------------------------------------------------------------------------------------------

function start() {
  $("send").addEventListener("click", send);
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("clear").addEventListener("click", () => {
    state.history = [];
    $("messages").replaceChildren();
    notice("");
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  $("verify").addEventListener("click", async () => {
    if (!state.busy && (await verify())) loadCollections().catch((e) => collectionNotice(e.message, true));
  });
  $("create-collection").addEventListener("click", createCollection);
  $("upload").addEventListener("click", upload);
  update();
  verify().then((ok) => {
    // Only once a worker verified does the page ask the service anything else.
    if (ok) loadCollections().catch((error) => collectionNotice(`collections unavailable: ${error.message}`, true));
  });
}

start();
