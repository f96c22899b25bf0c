// The reps' task list without reloads. Changes are pushed by Server-Sent Events
// (/api/stream, one "task" event per new or changed task); on each the list fragment is
// fetched and swapped in, new tasks highlighted. Polling the fragment stays as the fallback
// while the stream is down. A high-priority arrival puts the count in the tab title, plays a
// short sound (opt-in, remembered in localStorage) and shows a browser notification when
// permitted.
(function () {
  var list = document.getElementById("task-list");
  if (!list) return;
  var every = Math.max(0.2, parseFloat(list.dataset.poll || "5")) * 1000;
  var last = list.innerHTML;
  var baseTitle = document.title;
  var unseen = 0;
  var streamUp = false;
  var pending = null;
  var known = {};
  ids(list).forEach(function (id) { known[id] = true; });
  document.body.dataset.alerts = "0";

  function ids(root) {
    return Array.prototype.map.call(root.querySelectorAll("[data-task]"), function (el) { return el.dataset.task; });
  }
  function refresh() {
    return fetch(list.dataset.src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (r.redirected || !r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        if (html === last) return;
        var before = ids(list);
        list.innerHTML = html;
        last = html;
        ids(list).forEach(function (id) {
          if (before.indexOf(id) < 0) list.querySelector('[data-task="' + id + '"]').classList.add("fresh");
        });
        document.dispatchEvent(new CustomEvent("nurture:list"));
      });
  }
  function soon() {  // several events in a burst: one fetch
    if (pending) return;
    pending = setTimeout(function () { pending = null; refresh().catch(function () {}); }, 30);
  }
  function poll() {
    (streamUp ? Promise.resolve() : refresh()).catch(function () {})
      .then(function () { setTimeout(poll, every); });
  }
  setTimeout(poll, every);

  // -- alerts ------------------------------------------------------------------------------
  var soundOn = localStorage.getItem("nurture.sound") === "1";
  var audio = null;
  var soundBtn = document.getElementById("sound-toggle");
  var notifyBtn = document.getElementById("notify-toggle");
  function showSound() {
    if (!soundBtn) return;
    soundBtn.setAttribute("aria-pressed", soundOn ? "true" : "false");
    soundBtn.textContent = soundOn ? "Sound on" : "Sound off";
  }
  function beep() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
      var o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = 880; g.gain.value = 0.08;
      o.connect(g); g.connect(audio.destination);
      o.start(); o.stop(audio.currentTime + 0.15);
    } catch (e) { /* no audio: the title and the highlight still show it */ }
  }
  if (soundBtn) {
    showSound();
    soundBtn.addEventListener("click", function () {
      soundOn = !soundOn;
      localStorage.setItem("nurture.sound", soundOn ? "1" : "0");
      showSound();
      if (soundOn) beep();  // a user gesture: lets the audio context start
    });
  }
  if (notifyBtn) {
    if (!("Notification" in window) || Notification.permission === "granted") notifyBtn.hidden = true;
    notifyBtn.addEventListener("click", function () {
      Notification.requestPermission().then(function (p) { notifyBtn.hidden = p === "granted"; });
    });
  }
  function showTitle() { document.title = (unseen ? "(" + unseen + ") " : "") + baseTitle; }
  function seen() { if (unseen) { unseen = 0; showTitle(); } }
  document.addEventListener("visibilitychange", function () { if (!document.hidden) seen(); });
  document.addEventListener("keydown", seen);
  document.addEventListener("click", seen);
  function alert(task) {
    unseen += 1;
    showTitle();
    document.body.dataset.alerts = String(parseInt(document.body.dataset.alerts, 10) + 1);
    if (soundOn) beep();
    if ("Notification" in window && Notification.permission === "granted") {
      try {
        var n = new Notification((task.kind === "call_now" ? "Call now: " : "New call: ") + task.contact.name,
                                 { body: (task.contact.company ? task.contact.company + " · " : "") + task.reason,
                                   tag: "task-" + task.id });
        n.onclick = function () { window.focus(); location.href = "/tasks/" + task.id; };
      } catch (e) { /* notifications need a secure context in some browsers */ }
    }
  }

  // -- the stream --------------------------------------------------------------------------
  if (!window.EventSource) return;
  var source = new EventSource("/api/stream");
  source.addEventListener("open", function () { streamUp = true; });
  source.addEventListener("error", function () { streamUp = false; });  // the browser reconnects
  source.addEventListener("task", function (e) {
    var task;
    try { task = JSON.parse(e.data); } catch (err) { return; }
    var id = String(task.id);
    var open = task.status === "open" && !task.snoozed;
    if (open && !known[id] && (task.priority === "urgent" || task.priority === "high")) alert(task);
    if (open) known[id] = true; else delete known[id];
    document.body.dataset.lastEvent = e.lastEventId;
    document.dispatchEvent(new CustomEvent("nurture:task", { detail: task }));  // for extensions, bench/latency.py
    soon();
  });
})();

// Working the queue: keyboard shortcuts (? shows them), search and filter on the list, and
// the "then open the next call" toggle on a task, remembered in localStorage.
(function () {
  var help = document.getElementById("keys-help");
  var list = document.getElementById("task-list");
  var search = document.getElementById("search");
  var filter = document.getElementById("filter");
  var next = document.getElementById("go-next");
  var current = -1;

  if (next) {
    var saved = localStorage.getItem("nurture.next");
    if (saved !== null) next.checked = saved === "1";
    next.addEventListener("change", function () { localStorage.setItem("nurture.next", next.checked ? "1" : "0"); });
  }

  function items() {
    return list ? Array.prototype.filter.call(list.querySelectorAll("li.task"), function (li) {
      return !li.classList.contains("filtered");
    }) : [];
  }
  function applyFilter() {
    if (!list) return;
    var words = (search && search.value || "").toLowerCase().split(/\s+/).filter(Boolean);
    var only = filter && filter.value ? filter.value.split(" ") : [];
    Array.prototype.forEach.call(list.querySelectorAll("li.task"), function (li) {
      var text = li.dataset.search || "";
      var ok = words.every(function (w) { return text.indexOf(w) >= 0; }) &&
               (!only.length || only.some(function (w) { return (" " + text + " ").indexOf(" " + w + " ") >= 0 || (w === "call now" && text.indexOf("call now") >= 0); }));
      li.classList.toggle("filtered", !ok);
    });
    if (current >= 0) select(Math.min(current, items().length - 1));
  }
  function select(i) {
    var all = items();
    Array.prototype.forEach.call(list ? list.querySelectorAll("li.task.current") : [], function (li) { li.classList.remove("current"); });
    current = all.length ? Math.max(0, i) : -1;
    if (current >= 0) {
      all[current].classList.add("current");
      if (all[current].scrollIntoView) all[current].scrollIntoView({ block: "nearest" });
    }
  }
  if (search) search.addEventListener("input", applyFilter);
  if (filter) filter.addEventListener("change", applyFilter);
  document.addEventListener("nurture:list", function () {  // the list was swapped: keep the filter and the place
    var keep = current; applyFilter(); if (keep >= 0) select(keep);
  });

  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Escape") {
      if (help && !help.hidden) { help.hidden = true; return; }
      if (typing(document.activeElement)) document.activeElement.blur();
      return;
    }
    if (typing(document.activeElement)) return;
    var all = items();
    if (e.key === "?") { if (help) help.hidden = !help.hidden; e.preventDefault(); return; }
    if (e.key === "/" && search) { search.focus(); e.preventDefault(); return; }
    if (list && (e.key === "j" || e.key === "k")) {
      select(current < 0 ? 0 : current + (e.key === "j" ? 1 : -1));
      if (current >= all.length) select(all.length - 1);
      e.preventDefault(); return;
    }
    if (list && (e.key === "Enter" || e.key === "o") && current >= 0) {
      location.href = all[current].querySelector("a.open").href; return;
    }
    if (e.key === "c") {
      var tel = list ? (current >= 0 ? all[current].querySelector("a.tel") : null) : document.querySelector("a.phone");
      if (tel) { tel.click(); e.preventDefault(); }
      return;
    }
    var button = document.querySelector('button[data-key="' + e.key + '"]');
    if (button && !button.disabled && !button.closest("fieldset[disabled]")) { button.click(); e.preventDefault(); }
  });
})();
