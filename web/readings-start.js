// The reading page's first requests, asked for before its modules load (a classic
// script, first in the page's head): the caller (GET /me) and the statement library,
// and, when the page opens on #reading/<id>, the task and its first ECG window (0-10 s,
// diagnostic band: what web/readings.js asks for first). The server works on them while
// the browser fetches and compiles the modules; web/readings.js takes each answer once,
// by its path, and asks again for anything else.
//
// window.tcEarly maps an /api/v1 path to a promise of {answer} (the Response) or
// {error} (the fetch failed): never a rejected promise, so nothing is reported as
// unhandled when the page no longer needs an answer.

(() => {
  const early = {};
  const ask = (path) => {
    early[path] = fetch(`/api/v1${path}`, {
      headers: { accept: "application/json" },
      credentials: "same-origin",
    }).then(
      (answer) => ({ answer }),
      (error) => ({ error }),
    );
  };
  ask("/me");
  const [view, arg] = location.hash.replace(/^#/, "").split("/");
  if (view === "reading" && arg) {
    let id = null;
    try {
      id = encodeURIComponent(decodeURIComponent(arg));
    } catch {
      // A malformed id: the page says so once its modules run.
    }
    if (id) {
      ask(`/readings/${id}`);
      ask(`/readings/${id}/ecg?start_s=0&duration_s=10&band=diagnostic`);
    }
  }
  ask("/ecg/library");
  window.tcEarly = early;
})();
