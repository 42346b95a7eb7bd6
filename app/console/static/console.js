// Tierserve console: plain JS, no build step, no network beyond this server.
// The admin key and the playground's API key live in sessionStorage (this tab only).
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { adminKey: sessionStorage.getItem("tierserve.adminKey") || "", tiers: [], timer: null,
  teamsAt: 0 };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

const fmt = (x, digits = 2) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const tierClass = (name) => "t" + Math.max(0, state.tiers.findIndex((t) => t.name === name)) % 4;

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error && body.error.code;
  }
}

async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (state.adminKey) headers.authorization = "Bearer " + state.adminKey;
  const resp = await fetch("api/" + path, { ...opts, headers });
  const body = await resp.json().catch(() => null);
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

function showAuthError(err) {
  const box = $("#auth-error");
  if (!err) { box.hidden = true; return; }
  box.textContent = `Refused (${err.status}${err.code ? " " + err.code : ""}): ${err.message}`;
  box.hidden = false;
  $("#conn").textContent = "not connected";
}

// -- tiers ------------------------------------------------------------------------------
function replicaSummary(t) {
  const states = Object.entries(t.replica_states);
  if (!states.length) return "–";
  return states.map(([s, n]) => `${n} ${s.toLowerCase()}`).join(", ");
}

function statusBadge(t) {
  const ok = t.status === "HEALTHY" && (t.replica_states.RUNNING || 0) > 0;
  const cls = ok ? "ok" : ["UNHEALTHY", "DEPLOY_FAILED"].includes(t.status) ? "bad" : "warn";
  const label = ok ? "ready" : t.status.toLowerCase();
  return el("span", { class: "state " + cls, "data-testid": "tier-status", text: label });
}

function renderTiers(ov) {
  state.tiers = ov.tiers;
  const body = $("#tiers tbody");
  body.replaceChildren(...ov.tiers.map((t) => {
    const nodes = Object.entries(t.nodes).map(([n, k]) => `${n}: ${k}`).join(", ") || "–";
    const action = t.suspended ? "resume" : "suspend";
    const button = el("button", { "data-action": action, "data-tier": t.name, text: action,
      onclick: () => setSuspended(t.name, !t.suspended) });
    return el("tr", { "data-tier": t.name },
      el("td", {}, el("b", { text: t.name }), el("div", { class: "muted", text: t.description })),
      el("td", {}, el("div", { class: "mono", text: t.served_model_name }),
        el("div", { class: "muted mono", text: t.model_source.split("/").slice(-2).join("/") })),
      el("td", {}, statusBadge(t)),
      el("td", { "data-testid": "replicas", text: replicaSummary(t) }),
      el("td", { class: "mono", "data-testid": "nodes", text: nodes }),
      el("td", { text: `${t.min_replicas}–${t.max_replicas} (target ${t.target_ongoing_requests} ongoing)` }),
      el("td", { "data-testid": "engine" }, el("div", { text: t.engines ? `${t.engines.running} running, ` +
        `${t.engines.waiting} waiting · KV ${(t.engines.kv_cache_usage * 100).toFixed(1)}%` : "–" }),
        el("div", { class: "muted", text: `limits ${t.max_ongoing_requests} ongoing, ${t.max_queued_requests} queued` })),
      el("td", {}, el("span", { class: "state " + (t.suspended ? "warn" : "ok"), "data-testid": "routing-state",
        text: t.suspended ? "suspended" : "active" })),
      el("td", {}, button));
  }));
  const models = [["auto", "auto"], ...ov.tiers.map((t) => [t.served_model_name, `${t.name} (${t.served_model_name})`])];
  for (const [sel, list] of [["#model", models], ["#compare-model", models.slice(1)]]) {
    const select = $(sel);
    if (select.options.length === list.length) continue;
    const keep = select.value;
    select.replaceChildren(...list.map(([v, label]) => el("option", { value: v, text: label })));
    if (keep) select.value = keep;
  }
}

async function setSuspended(tier, suspended) {
  try {
    await api(`tiers/${encodeURIComponent(tier)}/${suspended ? "suspend" : "resume"}`, { method: "POST" });
    await refresh();
  } catch (err) { showAuthError(err); }
}

// -- routing ----------------------------------------------------------------------------
// "fast → medium (≥ 0.1714) → reasoning (≥ 0.2909)": a score reaches a tier at its threshold.
function ladderText(r) {
  return r.ladder.map((tier, i) => (i === 0 || r.thresholds[i - 1] === undefined ? tier
    : `${tier} (≥ ${fmt(r.thresholds[i - 1], 4)})`)).join(" → ");
}

function renderRouting(ov) {
  const live = ov.live;
  const shares = Object.entries(live.tiers);
  $("#share-note").textContent = `${live.total} served since this replica started; ` +
    `recent ${live.recent_window}`;
  $("#shares").replaceChildren(el("div", { class: "bar", "data-testid": "share-bar" },
    ...shares.map(([tier, s]) => el("span", { class: tierClass(tier), style: `width:${(s.share * 100).toFixed(1)}%`,
      title: `${tier}: ${s.requests}`, text: `${tier} ${(s.share * 100).toFixed(0)}%` }))));
  $("#reasons tbody").replaceChildren(...live.reasons.map((r) => el("tr", {},
    el("td", { text: r.tier }), el("td", { text: r.reason }), el("td", { text: r.requests }))));
  const r = ov.routing;
  const rules = r.rules.map((x) => `${x.name} → ${x.tier}${x.force ? " (forced)" : ""}`).join("; ") || "none";
  const items = [["ladder", ladderText(r)],
    ["thresholds", `${r.thresholds.map((t) => fmt(t, 4)).join(", ") || "none"} (${r.picker} picker; ` +
      `${r.thresholds_from === "router" ? "as the router uses them" : "from config: router not reached"})`],
    ...(Object.keys(r.target_shares).length ? [["target shares", Object.entries(r.target_shares)
      .map(([t, s]) => `${t} ${(s * 100).toFixed(0)}%`).join(", ")]] : []),
    ["default", r.default_tier],
    ["learned scorer", r.learned + (r.scorer_version ? ` (${r.scorer_version})` : "")], ["rules", rules],
    ["affinity", r.affinity],
    ["fallback", r.fallback], ["suspended", ov.suspended.join(", ") || "none"],
    ["tracing", ov.tracing ? "on (OTLP)" : "off"], ["prompts in logs", ov.log_prompts]];
  $("#routing-config").replaceChildren(...items.flatMap(([k, v]) => [el("dt", { text: k }),
    el("dd", { text: String(v) })]));
}

// -- decisions --------------------------------------------------------------------------
function detailsCell(d) {
  const cell = el("td", {});
  if (d.matched_rules.length) cell.append(el("div", { text: "rules: " + d.matched_rules.join(", ") }));
  const contributions = (d.details && d.details.contributions) || [];
  if (contributions.length) {
    cell.append(el("ul", { class: "contributions", "data-testid": "contributions" },
      ...contributions.map((c) => el("li", { text: `${c.plugin} (${c.kind}): ${c.outcome}` +
        (c.weight !== null && c.weight !== undefined ? ` ×${c.weight}` : "") + ` · ${fmt(c.ms, 2)} ms` }))));
  }
  const keys = Object.keys(d.details || {}).filter((k) => k !== "contributions");
  if (keys.length) {
    cell.append(el("details", {}, el("summary", { text: keys.join(", ") }),
      el("pre", { class: "mono", text: JSON.stringify(d.details, null, 1) })));
  }
  return cell;
}

function traceCell(traceId) {
  const cell = el("td", { class: "mono", title: traceId || "" });
  if (!traceId) { cell.textContent = "–"; return cell; }
  const label = traceId.slice(0, 12) + "…";
  if (state.traceUrl) {
    cell.append(el("a", { href: state.traceUrl.replace("{trace_id}", traceId), target: "_blank", rel: "noopener",
      text: label }));
  } else cell.textContent = label;
  return cell;
}

function renderDecisions(list) {
  $("#decisions tbody").replaceChildren(...list.map((d) => el("tr", { "data-request-id": d.request_id },
    el("td", { text: new Date(d.at * 1000).toLocaleTimeString() }),
    el("td", { class: "mono", text: d.request_id }),
    el("td", {}, el("span", { class: "state ok", text: d.tier })),
    el("td", { text: d.reason + (d.migrated_to.length ? ` → ${d.migrated_to.join(", ")}` : "") }),
    el("td", { text: d.score === null ? "–" : `${fmt(d.score, 3)} / ` +
      ((d.thresholds.length ? d.thresholds : [d.threshold]).map((t) => fmt(t, 3)).join(", ")) }),
    detailsCell(d),
    el("td", { text: fmt(d.ttft_ms, 1) }),
    el("td", { text: `${d.prompt_tokens} / ${d.completion_tokens}` }),
    el("td", { text: d.status }),
    traceCell(d.trace_id))));
}

// -- teams ------------------------------------------------------------------------------
function renderTeams(data) {
  const box = $("#teams");
  if (!data.keys.length) {
    box.replaceChildren(el("p", { class: "muted", text: "No keys yet: the API is open." }));
    return;
  }
  const teams = (data.usage && data.usage.teams) || [];
  const head = (cols) => el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { text: c }))));
  const spendRows = teams.map((t) => el("tr", {}, el("td", { text: t.team }), el("td", { text: t.requests }),
    el("td", { text: t.tokens }), el("td", { text: fmt(t.cost_usd, 4) }), el("td", { text: fmt(t.savings_usd, 4) })));
  const keyRows = data.keys.map((k) => el("tr", {}, el("td", { text: k.team }), el("td", { text: k.name }),
    el("td", { class: "mono", text: k.prefix }), el("td", { text: (k.tiers || ["all"]).join(", ") }),
    el("td", { text: k.rpm ?? "–" }), el("td", { text: k.tpm ?? "–" }),
    el("td", { text: k.revoked_at ? "revoked" : "active" })));
  box.replaceChildren(
    el("h3", { text: "Spend per team" }),
    el("table", { id: "team-spend" }, head(["Team", "Requests", "Tokens", "Cost $", "Saved by routing $"]),
      el("tbody", {}, ...spendRows)),
    el("h3", { text: "Keys" }),
    el("table", { id: "team-keys" }, head(["Team", "Name", "Prefix", "Tiers", "RPM", "TPM", "State"]),
      el("tbody", {}, ...keyRows)));
}

// -- polling ----------------------------------------------------------------------------
async function refresh() {
  try {
    const [ov, decisions] = await Promise.all([api("overview"), api("decisions?limit=50")]);
    showAuthError(null);
    $("#profile").textContent = `profile ${ov.profile}`;
    $("#conn").textContent = `connected ${new Date().toLocaleTimeString()}`;
    state.traceUrl = ov.trace_url;
    renderTiers(ov);
    renderRouting(ov);
    renderDecisions(decisions);
    if (Date.now() - state.teamsAt > 10000) {
      state.teamsAt = Date.now();
      renderTeams(await api("teams"));
    }
    return true;
  } catch (err) {
    if (err instanceof ApiError) showAuthError(err);
    return false;
  }
}

function startPolling() {
  clearInterval(state.timer);
  state.timer = setInterval(() => { if (document.visibilityState === "visible") refresh(); }, 2000);
}

$("#auth").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  state.adminKey = $("#admin-key").value.trim();
  sessionStorage.setItem("tierserve.adminKey", state.adminKey);
  state.teamsAt = 0;
  if (await refresh()) startPolling();
  else clearInterval(state.timer);
});

// -- playground -------------------------------------------------------------------------
function messageBox(model, prompt) {
  const meta = el("div", { class: "meta" });
  const box = el("div", { class: "msg", "data-model": model, "data-state": "streaming" },
    el("div", { class: "prompt", text: `${model} ← ${prompt}` }), el("div", { class: "answer" }), meta);
  return { box, answer: box.querySelector(".answer"), meta };
}

function setMeta(m, info) {
  const parts = [["tier", info.tier], ["reason", info.reason], ["ttft", info.ttft === null ? "–" : `${info.ttft.toFixed(0)} ms`],
    ["tokens", info.tokens], ["request", info.requestId]];
  m.meta.replaceChildren(...parts.flatMap(([k, v]) => [`${k} `, el("b", { class: k, text: v ?? "–" }), "  "]));
}

async function streamChat(model, prompt, maxTokens, m) {
  const headers = { "content-type": "application/json" };
  const apiKey = $("#api-key").value.trim();
  if (apiKey) headers.authorization = "Bearer " + apiKey;
  const t0 = performance.now();
  const info = { tier: null, reason: null, ttft: null, tokens: 0, requestId: null };
  try {
    const resp = await fetch("../v1/chat/completions", { method: "POST", headers, body: JSON.stringify({
      model, max_tokens: maxTokens, stream: true, stream_options: { include_usage: true },
      messages: [{ role: "user", content: prompt }] }) });
    info.tier = resp.headers.get("x-tierserve-tier");
    info.reason = resp.headers.get("x-tierserve-route-reason");
    info.requestId = resp.headers.get("x-request-id");
    setMeta(m, info);
    if (!resp.ok) {
      const body = await resp.json().catch(() => null);
      throw new ApiError(resp.status, body);
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      m.box.dataset.reads = String(Number(m.box.dataset.reads || 0) + 1);  // network reads: streamed
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
        const data = JSON.parse(event.slice(6));
        if (data.error) throw new ApiError(500, data);
        for (const c of data.choices || []) {
          const text = (c.delta && c.delta.content) || "";
          if (!text) continue;
          m.box.dataset.events = String(Number(m.box.dataset.events || 0) + 1);
          if (info.ttft === null) info.ttft = performance.now() - t0;
          m.answer.textContent += text;
          info.tokens += 1;
        }
        if (data.usage) info.tokens = data.usage.completion_tokens;
        if (data.tierserve && data.tierserve.served_by) info.tier = data.tierserve.served_by.join(" → ");
        setMeta(m, info);
      }
    }
    m.box.dataset.state = "done";
  } catch (err) {
    m.box.classList.add("failed");
    m.answer.textContent += `\n[${err.message}]`;
    m.box.dataset.state = "failed";
  }
  setMeta(m, info);
}

$("#playground").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const prompt = $("#prompt").value.trim();
  if (!prompt) return;
  const maxTokens = Number($("#max-tokens").value) || 64;
  const models = [$("#model").value];
  if ($("#side-by-side").checked) models.push($("#compare-model").value);
  const row = el("div", { class: "exchange" + (models.length > 1 ? " pair" : "") });
  $("#conversation").prepend(row);
  const boxes = models.map((model) => { const m = messageBox(model, prompt); row.append(m.box); return m; });
  await Promise.all(models.map((model, i) => streamChat(model, prompt, maxTokens, boxes[i])));
  if (state.timer) refresh();
});

$("#admin-key").value = state.adminKey;
refresh().then((ok) => { if (ok) startPolling(); });
