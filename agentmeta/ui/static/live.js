// Reload the page when the archive changes (a campaign is running): poll a change token.
(function () {
  var token = document.body.getAttribute("data-live-token");
  if (!token) { return; }
  function poll() {
    fetch("/api/changes", { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) {
        if (d && d.token !== token) { window.location.reload(); return; }
        setTimeout(poll, 3000);
      })
      .catch(function () { setTimeout(poll, 10000); });
  }
  setTimeout(poll, 3000);
})();
