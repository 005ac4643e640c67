/* The readiness test page: poll the test's status and show its progress without a reload;
   reload once the test is done or failed. Served from /ui/static/ (the CSP allows no inline
   script); the status URL comes from the page's data-status-url attribute. */
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var url = live.getAttribute("data-status-url");
  function poll() {
    fetch(url, {credentials: "same-origin"}).then(function (r) {
      if (r.status === 401) { window.location.assign("/ui/login"); return null; }
      if (!r.ok) { throw new Error("status " + r.status); }
      return r.json();
    }).then(function (s) {
      if (s === null) { return; }
      document.getElementById("progress").value = s.progress;
      document.getElementById("state").textContent = s.state;
      document.getElementById("message").textContent = s.message || "";
      if (s.state === "done" || s.state === "failed") { window.location.reload(); }
      else { setTimeout(poll, 1000); }
    }).catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 1000);
})();
