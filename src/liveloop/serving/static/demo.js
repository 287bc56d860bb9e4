// liveloop demo: the page talks to the service's own endpoints (/recommend, /feedback, /items) and /demo/world.
"use strict";

const K = 8;
const BASE = location.pathname.replace(/\/?$/, "/"); // "/demo/" whether the page was opened as /demo or /demo/
const el = (id) => document.getElementById(id);
const visitor = "visitor-" + Math.random().toString(36).slice(2, 8);
let world = null;
let previous = []; // item ids of the last list shown, to mark what changed
let addedItem = null;

const WRITES = new Set(["/feedback", "/items"]); // need the write token when the service has LIVELOOP_API_TOKEN

async function call(method, path, body) {
  const headers = body ? { "content-type": "application/json" } : {};
  const token = sessionStorage.getItem("liveloop-token");
  if (token && WRITES.has(path)) headers.authorization = `Bearer ${token}`;
  const response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await response.text();
  if (response.status === 401 && WRITES.has(path)) {
    const entered = window.prompt("This service takes writes with its token (LIVELOOP_API_TOKEN):");
    if (entered && entered !== token) {
      sessionStorage.setItem("liveloop-token", entered);
      return call(method, path, body);
    }
  }
  if (!response.ok) throw new Error(`${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

function say(message, error = false) {
  const status = el("status");
  status.textContent = message;
  status.className = error ? "error" : "muted";
}

function node(tag, { dataset = {}, ...props } = {}, ...children) {
  const n = Object.assign(document.createElement(tag), props);
  Object.assign(n.dataset, dataset);
  for (const c of children) n.append(c);
  return n;
}

function roomOf(itemId) {
  for (const room of world.rooms) if (room.products.some((p) => p.item_id === itemId)) return room;
  return null;
}

function priceOf(itemId) {
  const room = roomOf(itemId);
  const product = room && room.products.find((p) => p.item_id === itemId);
  return product ? product.price : null;
}

async function loadWorld() {
  world = await call("GET", BASE + "world");
  el("clock").textContent = `model ${world.model_version} · live now: ${world.now}`;
  const rooms = el("rooms");
  rooms.replaceChildren(...world.rooms.map((room) => node("div", { className: "room", dataset: { streamId: room.stream_id } },
    node("h3", { textContent: room.title }),
    node("div", { className: "muted", textContent: `${room.stream_id} · host ${room.host_id} · ${room.start.slice(11, 16)}–${room.end.slice(11, 16)}` }),
    node("ul", {}, ...room.products.map((p) => node("li", {
      className: p.item_id === addedItem ? "fresh" : "", dataset: { itemId: p.item_id },
      textContent: `${p.title} · ${p.category}${p.price == null ? "" : " · " + p.price.toFixed(2)}`,
    }))))));
  const select = el("room-select");
  select.replaceChildren(...world.rooms.map((r) => node("option", { value: r.stream_id, textContent: r.title })));
  const user = el("user");
  if (!user.options.length) {
    user.append(node("option", { value: visitor, textContent: `new visitor (${visitor})` }));
    for (const u of world.users) user.append(node("option", { value: u.user_id, textContent: `${u.user_id} (${u.events} events)` }));
    user.selectedIndex = world.users.length ? 1 : 0;
  }
}

async function recommend() {
  const body = await call("POST", "/recommend", { user_id: el("user").value, k: K });
  const ids = body.items.map((i) => i.item_id);
  const changed = previous.length > 0 && ids.join() !== previous.join();
  el("recs").replaceChildren(...body.items.map((item, rank) => {
    const moved = previous.length > 0 && previous[rank] !== item.item_id;
    const isNew = previous.length > 0 && !previous.includes(item.item_id);
    const li = node("li", { className: moved ? "changed" : "", dataset: { itemId: item.item_id, testid: "rec" } },
      node("span", { className: "title" }, item.title, ...(isNew ? [node("span", { className: "badge", textContent: "new" })] : [])),
      node("span", { className: "score", textContent: item.score.toFixed(3) }),
      node("span", { className: "reason", textContent: `${item.reason} · ${item.item_id}` }),
      node("span", { className: "actions" },
        ...[["click", "click"], ["add_to_cart", "add to cart"], ["purchase", "buy"]].map(([type, label]) =>
          node("button", { textContent: label, dataset: { action: type }, onclick: () => act(item, type) })),
        node("button", { textContent: "comment", dataset: { action: "comment" }, onclick: () => comment(item) })));
    return li;
  }));
  previous = ids;
  return { body, changed };
}

async function act(item, type, text) {
  const event = { user_id: el("user").value, item_id: item.item_id, event_type: type };
  const room = roomOf(item.item_id);
  if (room) event.stream_id = room.stream_id;
  if (type === "purchase") {
    event.quantity = 1;
    const price = priceOf(item.item_id);
    if (price != null) event.price = price;
  }
  if (text) event.text = text;
  try {
    await call("POST", "/feedback", { events: [event] });
    const { changed } = await recommend();
    say(`${type.replace(/_/g, " ")} on “${item.title}” logged; ${changed ? "the list changed" : "the list stayed the same"}`);
  } catch (error) {
    say(error.message, true);
  }
}

function comment(item) {
  const text = window.prompt(`Comment on “${item.title}”`, "love this, does it come in blue?");
  if (text) act(item, "comment", text);
}

el("add-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const product = Object.fromEntries(form.entries());
  product.price = Number(product.price);
  try {
    await call("POST", "/items", { items: [product] });
    addedItem = product.item_id;
    await loadWorld();
    el("room-select").value = product.stream_id;
    await recommend();
    say(`added “${product.title}” to ${product.stream_id}`);
  } catch (error) {
    say(error.message, true);
  }
});

el("user").addEventListener("change", () => { previous = []; recommend().catch((e) => say(e.message, true)); });

loadWorld().then(recommend).then(() => say("click, add to cart, buy or comment: the list updates at once"))
  .catch((error) => say(error.message, true));
