// The Back-office page: the overview, a company's tabs, and the operators' view, on the JSON API
// with the caller's token. No framework and no build step: every element is made with el(), so no
// text from the server is ever parsed as HTML.

const TEXT = {
  sv: {
    overview: "Översikt", mine: "Mina bolag", operations: "Drift", signout: "Logga ut",
    other: "English", signin: "Logga in", signinHelp: "Logga in via byråns inloggning. I utveckling: öppna länken som demo skriver ut, eller klistra in en token.",
    token: "Token", search: "Sök namn eller org.nr", responsible: "Ansvarig", anyone: "Alla", me: "Jag",
    domain: "Område", status: "Status", any: "Alla", filter: "Filtrera", next: "Nästa sida", first: "Första sidan",
    company: "Bolag", orgNumber: "Org.nr", none: "Inga bolag matchar.",
    bookkeeping: "Bokföring", payroll: "Lön", vat: "Moms", closing: "Bokslut", notes: "Anteckningar", history: "Historik",
    period: "Period", deadline: "Deadline", daysLeft: "Dagar kvar", setBy: "Satt av", setAt: "Satt",
    byCompany: "Från kunden", set: "Sätt", sendBack: "Skicka tillbaka", newDeadline: "Ny deadline",
    steps: "Steg", reported: "Rapporterad", yes: "Ja", no: "Nej", link: "Öppna",
    users: "Användare", addMe: "Lägg till mig", addUser: "Lägg till", email: "E-post",
    engagement: "Uppdrag", startMonth: "Startmånad", save: "Spara",
    comment: "Kommentar", todo: "Att göra", add: "Lägg till", text: "Text",
    from: "Från", to: "Till", when: "När", cause: "Orsak",
    queue: "Kö", ready: "Väntar", dead: "Döda meddelanden", reasons: "Orsaker", replay: "Spela upp igen",
    forbidden: "Du är inte tillagd på bolaget.", notFound: "Finns inte.", unauthorized: "Logga in igen.",
    live: "Live", offline: "Inte live", changed: "Uppdaterat", pending: "Skickat; väntar på svar.", failed: "Kunde inte utföras; en operatör kan köra om det.",
    name: "Namn", legalForm: "Bolagsform", method: "Bokföringsmetod", vatFrequency: "Momsperiod",
    fiscalYear: "Räkenskapsår", header: "Översikt", noRows: "Inga perioder.",
    last_upload_at: "Senaste uppladdning", client_todo_count: "Saker att göra", vat_frequency: "Momsperiod",
    fiscal_year_end: "Räkenskapsårets slut", latest_completed_month: "Senast klara månad", employees: "Anställda",
    employer_declaration_due: "Arbetsgivardeklaration senast", last_bookkeeping_at: "Senast bokfört",
    next_fiscal_year_end: "Nästa räkenskapsårs slut", legal_form: "Bolagsform",
  },
  en: {
    overview: "Overview", mine: "My companies", operations: "Operations", signout: "Sign out",
    other: "Svenska", signin: "Sign in", signinHelp: "Sign in through the agency's identity provider. In development: open the link demo prints, or paste a token.",
    token: "Token", search: "Search name or org number", responsible: "Responsible", anyone: "Anyone", me: "Me",
    domain: "Domain", status: "Status", any: "Any", filter: "Filter", next: "Next page", first: "First page",
    company: "Company", orgNumber: "Org number", none: "No company matches.",
    bookkeeping: "Bookkeeping", payroll: "Payroll", vat: "VAT", closing: "Closing", notes: "Notes", history: "History",
    period: "Period", deadline: "Deadline", daysLeft: "Days left", setBy: "Set by", setAt: "Set at",
    byCompany: "From the client", set: "Set", sendBack: "Send back", newDeadline: "New deadline",
    steps: "Steps", reported: "Reported", yes: "Yes", no: "No", link: "Open",
    users: "Users", addMe: "Add me", addUser: "Add", email: "E-mail",
    engagement: "Engagement", startMonth: "Start month", save: "Save",
    comment: "Comment", todo: "To-do", add: "Add", text: "Text",
    from: "From", to: "To", when: "When", cause: "Cause",
    queue: "Queue", ready: "Waiting", dead: "Dead letters", reasons: "Reasons", replay: "Replay",
    forbidden: "You are not added to this company.", notFound: "Not found.", unauthorized: "Sign in again.",
    live: "Live", offline: "Not live", changed: "Updated", pending: "Sent; waiting for an answer.", failed: "Could not be carried out; an operator can replay it.",
    name: "Name", legalForm: "Legal form", method: "Accounting method", vatFrequency: "VAT period",
    fiscalYear: "Fiscal year", header: "Overview", noRows: "No periods.",
    last_upload_at: "Last upload", client_todo_count: "Client to-dos", vat_frequency: "VAT period",
    fiscal_year_end: "Fiscal year end", latest_completed_month: "Latest completed month", employees: "Employees",
    employer_declaration_due: "Employer declaration due", last_bookkeeping_at: "Bookkeeping last created",
    next_fiscal_year_end: "Next fiscal year end", legal_form: "Legal form",
  },
};
const DOMAINS = ["bookkeeping", "payroll", "vat", "closing"];
const SETTABLE = ["waiting", "late", "new", "in_progress", "incomplete", "done"];

const state = {
  lang: localStorage.getItem("lang") || (new URLSearchParams(location.search).get("lang") === "en" ? "en" : "sv"),
  labels: {},
  token: sessionStorage.getItem("token"),
  overview: { cursors: [null], filters: {} },
  view: null,
};

const t = (key) => TEXT[state.lang][key] || key;
const label = (status) => (state.labels[status] || {})[state.lang] || status;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const chip = (status, count) =>
  el("span", { class: `chip ${status}`, title: status }, count === undefined ? label(status) : `${label(status)} ${count}`);

function claims() {
  try {
    return JSON.parse(atob(state.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return {};
  }
}

class Refusal extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(method, path, body) {
  const answer = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${state.token}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = answer.headers.get("content-type")?.includes("json") ? await answer.json() : null;
  if (answer.status === 401) { signOut(); throw new Refusal(401, t("unauthorized")); }
  if (!answer.ok) {
    const detail = answer.status === 403 ? t("forbidden") : answer.status === 404 ? t("notFound") : data?.detail || answer.statusText;
    throw new Refusal(answer.status, detail);
  }
  return { status: answer.status, data };
}

const pause = (ms) => new Promise((done) => setTimeout(done, ms));

// A command its owner has not applied within the API's wait is answered 202 with where to ask:
// follow it, so that the view is drawn again only once the command is applied, or says why not.
async function command(method, path, body) {
  const answer = await api(method, path, body);
  if (answer.status !== 202 || !answer.data?.location) return answer;
  announce(t("pending"));
  for (let asked = 0; asked < 120; asked++) {
    await pause(asked < 10 ? 300 : 1000);
    const outcome = await api("GET", answer.data.location);
    if (outcome.status === 202) continue;
    if (outcome.data.status === "applied") return outcome;
    throw new Refusal(outcome.data.status === "rejected" ? 409 : 422, outcome.data.reason || t(outcome.data.status));
  }
  return answer;
}

// Views load asynchronously, so an older view's answer can arrive after a newer view began (a
// click or a hash change while the overview is still loading). Each view takes a ticket when it
// begins and shows its nodes only while that ticket is still the latest one.
// A redraw for a live change is not the user's doing: it must not land on a field the user began
// to edit while it loaded, so it checks again when its answer is there.
function begin() {
  state.ticket = (state.ticket || 0) + 1;
  state.redrawTicket = state.redrawing ? state.ticket : null;
  return state.ticket;
}

function show(ticket, ...nodes) {
  if (ticket !== state.ticket) return false;
  if (ticket === state.redrawTicket && editing()) { refreshSoon(1000); return false; }
  document.getElementById("main").replaceChildren(...nodes);
  return true;
}

function announce(text) { document.getElementById("announce").textContent = text; }

function failure(error) { return el("p", { class: "error", role: "alert", text: error.message }); }

// ------------------------------------------------------------------ sign-in
function signIn() {
  const field = el("textarea", { id: "token", rows: 3, cols: 60, "aria-label": t("token") });
  show(begin(), el("h1", { text: t("signin") }), el("p", { text: t("signinHelp") }),
    el("form", { onsubmit: (e) => { e.preventDefault(); keep(field.value.trim()); route(); } },
      el("label", {}, t("token"), field), el("p", {}, el("button", { class: "primary", type: "submit", text: t("signin") }))));
}

function keep(token) { state.token = token; sessionStorage.setItem("token", token); connectLive(); chrome(); }

function signOut() {
  state.token = null; sessionStorage.removeItem("token");
  if (state.source) state.source.close();
  chrome(); signIn();
}

// ------------------------------------------------------------------ the overview
async function overview(mine = false) {
  const ticket = begin();
  const f = state.overview.filters;
  const query = el("input", { type: "search", name: "q", value: f.q || "", placeholder: t("search"), "aria-label": t("search") });
  const seen = [...new Set([...(state.overview.responsibles || []), f.responsible].filter((r) => r && r !== "me"))].sort();
  const responsible = el("select", { name: "responsible", "aria-label": t("responsible") },
    el("option", { value: "", text: t("anyone") }), el("option", { value: "me", text: t("me"), selected: f.responsible === "me" }),
    seen.map((r) => el("option", { value: r, text: r, selected: f.responsible === r })));
  const domain = el("select", { name: "domain", "aria-label": t("domain") }, el("option", { value: "", text: t("any") }),
    DOMAINS.map((d) => el("option", { value: d, text: t(d), selected: f.domain === d })));
  const status = el("select", { name: "status", "aria-label": t("status") }, el("option", { value: "", text: t("any") }),
    Object.keys(state.labels).map((s) => el("option", { value: s, text: label(s), selected: f.status === s })));
  const form = el("form", { class: "filters", role: "search", onsubmit: (e) => {
    e.preventDefault();
    state.overview.filters = { q: query.value.trim(), responsible: responsible.value, domain: domain.value, status: status.value };
    state.overview.cursors = [null];
    overview(mine);
  } },
  el("label", {}, t("search"), query), mine ? null : el("label", {}, t("responsible"), responsible),
  el("label", {}, t("domain"), domain), el("label", {}, t("status"), status),
  el("button", { type: "submit", class: "primary", text: t("filter") }));
  const cursor = state.overview.cursors.at(-1);
  const params = new URLSearchParams({ limit: "25" });
  if (cursor) params.set("cursor", cursor);
  if (!mine) {
    if (f.q) params.set("q", f.q);
    if (f.responsible) params.set("responsible", f.responsible);
    if (f.domain && f.status) { params.set("domain", f.domain); params.set("status", f.status); }
  }
  const heading = el("h1", { text: mine ? t("mine") : t("overview") });
  try {
    const { data } = await api("GET", `${mine ? "/v1/me/companies" : "/v1/companies"}?${params}`);
    // The responsible consultants seen so far become choices of the filter.
    state.overview.responsibles = [...new Set([...(state.overview.responsibles || []), ...data.items.map((i) => i.responsible_user_id).filter(Boolean)])];
    const rows = data.items.map((item) => el("tr", { "data-company": item.company_id },
      el("td", {}, el("a", { href: `#/company/${encodeURIComponent(item.company_id)}/bookkeeping`, text: item.name || item.company_id })),
      el("td", { text: item.org_number || "" }), el("td", { text: item.responsible_user_id || "" }),
      DOMAINS.map((d) => {
        const s = item.domains[d] || { counts: {} };
        return el("td", { "data-domain": d },
          s.latest_period ? el("div", {}, `${s.latest_period} `, chip(s.latest_status)) : null,
          el("div", {}, Object.entries(s.counts).map(([k, n]) => chip(k, n))));
      })));
    const pager = el("div", { class: "pager" },
      state.overview.cursors.length > 1 ? el("button", { type: "button", text: t("first"), onclick: () => { state.overview.cursors = [null]; overview(mine); } }) : null,
      data.next_cursor ? el("button", { type: "button", text: t("next"), onclick: () => { state.overview.cursors.push(data.next_cursor); overview(mine); } }) : null);
    show(ticket, heading, mine ? null : form,
      rows.length ? el("table", { id: "overview" },
        el("thead", {}, el("tr", {}, el("th", { text: t("company") }), el("th", { text: t("orgNumber") }), el("th", { text: t("responsible") }), DOMAINS.map((d) => el("th", { text: t(d) })))),
        el("tbody", {}, rows)) : el("p", { class: "muted", text: t("none") }),
      pager);
  } catch (error) {
    show(ticket, heading, form, failure(error));
  }
}

// ------------------------------------------------------------------ a company
const fmt = (value) => (value === null || value === undefined ? "" : String(value).replace("T", " ").replace(/\.\d{3}Z$/, " UTC"));

async function company(id, tab) {
  const ticket = begin();
  const tabs = el("nav", { class: "tabs", "aria-label": t("company") },
    [...DOMAINS, "notes", "history"].map((name) => el("a", { href: `#/company/${encodeURIComponent(id)}/${name}`, text: t(name), "aria-current": name === tab ? "page" : null })));
  let facts;
  try {
    facts = (await api("GET", `/v1/companies/${encodeURIComponent(id)}`)).data;
  } catch (error) {
    show(ticket, el("h1", { text: id }), failure(error));
    return;
  }
  let content;
  try {
    content = await tabView(id, tab, facts);
  } catch (error) {
    content = [failure(error)];
  }
  // Card and tab are drawn together: nothing half-drawn to type into.
  show(ticket, el("h1", { text: facts.name || id }), companyCard(facts), tabs, el("div", { id: "tab" }, content));
}

function companyCard(c) {
  const me = claims().sub;
  const email = el("input", { type: "email", required: true, "aria-label": t("email"), placeholder: t("email") });
  const start = el("input", { type: "month", value: c.engagement.start_month || "", "aria-label": t("startMonth") });
  const responsible = el("input", { value: c.engagement.responsible_user_id || "", "aria-label": t("responsible"), size: 10 });
  const act = (method, path, body) => async (e) => {
    e?.preventDefault();
    try { await command(method, path, body && body()); route(); } catch (error) { e?.target?.append?.(failure(error)); announce(error.message); }
  };
  const base = `/v1/companies/${encodeURIComponent(c.company_id)}`;
  return el("section", { class: "card", "aria-label": t("header") },
    el("dl", { class: "facts" },
      el("dt", { text: t("orgNumber") }), el("dd", { text: c.org_number || "" }),
      el("dt", { text: t("legalForm") }), el("dd", { text: c.legal_form || "" }),
      el("dt", { text: t("method") }), el("dd", { text: c.accounting_method || "" }),
      el("dt", { text: t("vatFrequency") }), el("dd", { text: c.vat_frequency || "" }),
      el("dt", { text: t("fiscalYear") }), el("dd", { text: `${c.fiscal_year_start || ""} – ${c.fiscal_year_end || ""}` }),
      el("dt", { text: t("users") }), el("dd", { id: "users" }, c.users.map((u) => `${u.name || u.user_id} (${u.email || u.user_id})`).join(", "))),
    el("div", { class: "row-actions" },
      c.users.some((u) => u.user_id === me) ? null : el("button", { type: "button", id: "add-me", text: t("addMe"), onclick: act("POST", `${base}/users/me`) }),
      el("form", { onsubmit: act("POST", `${base}/users`, () => ({ email: email.value })) }, email, " ", el("button", { type: "submit", text: t("addUser") })),
      el("form", { onsubmit: act("PUT", `${base}/engagement`, () => ({ start_month: start.value, responsible_user_id: responsible.value })) },
        el("span", { class: "muted", text: `${t("engagement")}: ` }), start, " ", responsible, " ", el("button", { type: "submit", text: t("save") }))));
}

async function tabView(id, tab, facts) {
  const base = `/v1/companies/${encodeURIComponent(id)}`;
  if (tab === "notes") return notesView(base);
  if (tab === "history") return historyView(base);
  const { data } = await api("GET", `${base}/${tab}`);
  const header = el("dl", { class: "facts card" }, Object.entries(data.header).flatMap(([k, v]) => [el("dt", { text: t(k) }), el("dd", { text: fmt(v) })]));
  if (!data.periods.length) return [header, el("p", { class: "muted", text: t("noRows") })];
  const columns = {
    bookkeeping: [["period", "period"], ["status", null], ["deadline", "deadline"], ["daysLeft", "days_left"], ["byCompany", "updated_by_company_at"], ["setBy", "status_set_by"], ["setAt", "status_set_at"]],
    payroll: [["period", "period"], ["status", null], ["byCompany", "updated_by_company_at"], ["setBy", "status_set_by"], ["setAt", "status_set_at"]],
    vat: [["period", "period"], ["status", null], ["steps", "steps_completed"], ["reported", "reported"], ["deadline", "deadline"], ["daysLeft", "days_left"]],
    closing: [["period", "period"], ["status", null], ["steps", "steps_completed"], ["deadline", "deadlines"], ["link", "closing_url"]],
  }[tab];
  const settable = tab === "bookkeeping" || tab === "payroll";
  const rows = data.periods.slice().reverse().map((row) => el("tr", { "data-period": row.period },
    columns.map(([name, field]) => {
      if (field === null) return el("td", { "data-status": row.status }, chip(row.status));
      if (field === "deadlines") return el("td", { text: Object.entries(row.deadlines).filter(([, v]) => v).map(([k, v]) => `${k}: ${v}`).join(", ") });
      if (field === "closing_url") return el("td", {}, el("a", { href: row.closing_url, target: "_blank", rel: "noopener", text: t("link") }));
      if (field === "reported") return el("td", { text: row.reported ? t("yes") : t("no") });
      return el("td", { text: fmt(row[field]) });
    }),
    settable ? el("td", {}, statusForm(base, tab, row)) : null));
  return [header, el("table", { id: `${tab}-rows` },
    el("thead", {}, el("tr", {}, columns.map(([name]) => el("th", { text: t(name) })), settable ? el("th", { text: t("set") }) : null)),
    el("tbody", {}, rows))];
}

function statusForm(base, tab, row) {
  const status = el("select", { "aria-label": `${t("status")} ${row.period}` }, SETTABLE.map((s) => el("option", { value: s, text: label(s), selected: s === row.status })));
  const deadline = el("input", { type: "date", "aria-label": `${t("newDeadline")} ${row.period}` });
  const send = async (body) => {
    try {
      const answer = await command("PUT", `${base}/${tab}/periods/${row.period}/status`, body);
      announce(answer.status === 202 ? t("pending") : t("changed"));
      route();
    } catch (error) { form.append(failure(error)); }
  };
  const form = el("form", { class: "row-actions", onsubmit: (e) => { e.preventDefault(); send({ status: status.value }); } },
    status, el("button", { type: "submit", text: t("set") }),
    tab === "bookkeeping" ? [deadline, el("button", { type: "button", text: t("sendBack"), onclick: () => send({ status: "waiting", deadline: deadline.value || null }) })] : null);
  return form;
}

async function notesView(base) {
  const { data } = await api("GET", `${base}/notes`);
  const kind = el("select", { "aria-label": t("notes") }, el("option", { value: "comment", text: t("comment") }), el("option", { value: "todo", text: t("todo") }));
  const text = el("input", { required: true, maxlength: 2000, size: 50, "aria-label": t("text") });
  const add = el("form", { class: "row-actions", onsubmit: async (e) => {
    e.preventDefault();
    const body = { kind: kind.value, text: text.value, ...(kind.value === "todo" ? { status: "new" } : {}) };
    try { await command("POST", `${base}/notes`, body); route(); } catch (error) { add.append(failure(error)); }
  } }, kind, text, el("button", { type: "submit", class: "primary", text: t("add") }));
  const items = data.items.map((n) => el("li", {}, el("strong", { text: n.kind === "todo" ? t("todo") : t("comment") }), " ", n.text, " ",
    el("span", { class: "muted", text: `${n.author_user_id}, ${fmt(n.created_at)}` }), " ",
    n.kind === "todo" ? el("select", { "aria-label": `${t("status")} ${n.text}`, onchange: async (e) => {
      try { await command("PUT", `${base}/notes/${n.note_id}/status`, { status: e.target.value }); route(); } catch (error) { e.target.after(failure(error)); }
    } }, SETTABLE.map((s) => el("option", { value: s, text: label(s), selected: s === n.status }))) : null));
  return [add, el("ul", { id: "notes" }, items)];
}

async function historyView(base, cursor = null) {
  const { data } = await api("GET", `${base}/history?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
  const table = el("table", { id: "history" },
    el("thead", {}, el("tr", {}, ["when", "domain", "period", "from", "to", "cause"].map((k) => el("th", { text: t(k) })))),
    el("tbody", {}, data.items.map((h) => el("tr", {}, el("td", { text: fmt(h.at) }), el("td", { text: t(h.domain) }), el("td", { text: h.period }),
      el("td", {}, chip(h.from)), el("td", {}, chip(h.to)), el("td", { text: `${h.cause.kind} ${h.cause.id || ""}` })))));
  const more = data.next_cursor ? el("button", { type: "button", text: t("next"), onclick: async () => {
    document.getElementById("tab").replaceChildren(...(await historyView(base, data.next_cursor)));
  } }) : null;
  return [table, el("div", { class: "pager" }, more)];
}

// ------------------------------------------------------------------ operators
async function operations() {
  const ticket = begin();
  const heading = el("h1", { text: t("operations") });
  try {
    const { data } = await api("GET", "/v1/operations/queues");
    show(ticket, heading, el("table", { id: "queues" },
      el("thead", {}, el("tr", {}, ["queue", "ready", "dead", "reasons", "replay"].map((k) => el("th", { text: t(k) })))),
      el("tbody", {}, data.items.map((q) => el("tr", { "data-consumer": q.consumer },
        el("td", { text: q.queue }), el("td", { text: q.ready }), el("td", { "data-dead": q.dead, text: q.dead }),
        el("td", { text: Object.entries(q.dead_by_reason).map(([k, n]) => `${k}: ${n}`).join(", ") }),
        el("td", {}, q.dead ? el("button", { type: "button", text: `${t("replay")} (${q.dead})`, onclick: async () => {
          await api("POST", `/v1/operations/queues/${q.consumer}/replay`);
          operations();
        } }) : null))))));
  } catch (error) {
    show(ticket, heading, failure(error));
  }
}

// ------------------------------------------------------------------ live updates
// Drawing the view again throws away what the user is typing or choosing: while a field of the
// view has the focus or a value of the user's, the redraw waits.
function editing() {
  const fields = document.getElementById("main").querySelectorAll("input, textarea, select");
  return [...fields].some((f) => f === document.activeElement || (f.tagName === "SELECT"
    ? f.selectedIndex !== Math.max(0, [...f.options].findIndex((o) => o.defaultSelected))
    : f.value !== f.defaultValue));
}

function refreshSoon(ms) {
  clearTimeout(state.refresh);
  state.refresh = setTimeout(() => {
    if (editing()) return refreshSoon(1000);
    state.redrawing = true;
    try { route(); } finally { state.redrawing = false; }
    announce(t("changed"));
  }, ms);
}

function connectLive() {
  if (state.source) state.source.close();
  if (!state.token) return;
  const source = new EventSource(`/v1/events/stream?access_token=${encodeURIComponent(state.token)}`);
  const badge = document.getElementById("live-state");
  source.onopen = () => { badge.textContent = `● ${t("live")}`; };
  source.onerror = () => { badge.textContent = `○ ${t("offline")}`; };
  source.addEventListener("status.changed", (event) => {
    const change = JSON.parse(event.data);
    const view = state.view || {};
    if (view.name === "overview" || (view.name === "company" && view.id === change.company_id)) refreshSoon(200);
  });
  state.source = source;
}

// ------------------------------------------------------------------ routing
function chrome() {
  document.documentElement.lang = state.lang;
  document.getElementById("lang").textContent = t("other");
  const signout = document.getElementById("signout");
  signout.textContent = t("signout");
  signout.hidden = !state.token;
  const nav = document.getElementById("nav");
  const operator = (claims().permissions || []).includes("operate");
  nav.replaceChildren(...(state.token ? [el("a", { href: "#/", text: t("overview") }), el("a", { href: "#/mine", text: t("mine") }),
    operator ? el("a", { href: "#/operations", text: t("operations") }) : null].filter(Boolean) : []));
}

async function route() {
  const hash = location.hash.slice(1);
  if (hash.startsWith("token=")) {
    keep(decodeURIComponent(hash.slice(6)));
    history.replaceState(null, "", `${location.pathname}${location.search}#/`);
    return route();
  }
  if (!state.token) return signIn();
  const [, first, id, tab] = hash.split("/");
  if (first === "company" && id) {
    state.view = { name: "company", id: decodeURIComponent(id) };
    return company(decodeURIComponent(id), tab || "bookkeeping");
  }
  if (first === "operations") { state.view = { name: "operations" }; return operations(); }
  state.view = { name: "overview" };
  return overview(first === "mine");
}

async function start() {
  // A sign-in link carries the token in the fragment, which no server ever sees: take it first.
  if (location.hash.startsWith("#token=")) {
    state.token = decodeURIComponent(location.hash.slice(7));
    sessionStorage.setItem("token", state.token);
    history.replaceState(null, "", `${location.pathname}${location.search}#/`);
  }
  document.getElementById("lang").addEventListener("click", () => {
    state.lang = state.lang === "sv" ? "en" : "sv";
    localStorage.setItem("lang", state.lang);
    chrome(); route();
  });
  document.getElementById("signout").addEventListener("click", signOut);
  state.labels = await (await fetch("/v1/labels")).json();
  window.addEventListener("hashchange", route);
  chrome();
  if (state.token) connectLive();
  await route();
}

start();
