window.addEventListener("error", (e) => note(e.message + " (line " + e.lineno + ")"));
function note(message) {
  const b = document.body;
  b.dataset.errors = (b.dataset.errors ? b.dataset.errors + "; " : "") + message;
}
