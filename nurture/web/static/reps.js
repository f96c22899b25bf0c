// Refresh the task list without a reload: fetch the list fragment every few seconds and
// swap it in when it changed, highlighting tasks that were not there before.
(function () {
  var list = document.getElementById("task-list");
  if (!list) return;
  var every = Math.max(0.2, parseFloat(list.dataset.poll || "5")) * 1000;
  var last = list.innerHTML;
  function ids(root) {
    return Array.prototype.map.call(root.querySelectorAll("[data-task]"), function (el) { return el.dataset.task; });
  }
  function tick() {
    fetch(list.dataset.src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (r.redirected || !r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        if (html === last) return;
        var before = ids(list);
        list.innerHTML = html;
        last = html;
        ids(list).forEach(function (id) {
          if (before.indexOf(id) < 0) list.querySelector('[data-task="' + id + '"]').classList.add("fresh");
        });
      })
      .catch(function () {})
      .then(function () { setTimeout(tick, every); });
  }
  setTimeout(tick, every);
})();
