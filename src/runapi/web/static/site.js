// RunAPI pages: copy buttons and live filtering of the model list. No dependencies.
"use strict";

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text);
  }
  // Plain-HTTP deployments have no Clipboard API: fall back to a selected textarea.
  return new Promise(function (resolve, reject) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = document.execCommand("copy");
    document.body.removeChild(area);
    if (ok) { resolve(); } else { reject(new Error("copy failed")); }
  });
}

function setUpCopyButtons() {
  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    var label = button.textContent;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) { return; }
      copyText(source.textContent).then(function () {
        button.textContent = button.getAttribute("data-copied") || label;
        button.classList.add("done");
        setTimeout(function () { button.textContent = label; button.classList.remove("done"); }, 1500);
      });
    });
  });
}

function setUpModelFilter() {
  var table = document.getElementById("models-table");
  if (!table) { return; }
  var search = document.getElementById("model-search");
  var provider = document.getElementById("provider-filter");
  var mode = document.getElementById("mode-filter");
  var count = document.getElementById("model-count");
  var empty = document.getElementById("no-match");
  var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr"));
  function apply() {
    var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    rows.forEach(function (row) {
      var ok = (!provider.value || row.dataset.provider === provider.value) &&
               (!mode.value || row.dataset.mode === mode.value) &&
               words.every(function (w) { return row.dataset.search.indexOf(w) !== -1; });
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    if (empty) { empty.hidden = shown !== 0; }
    if (count && count.dataset.template) {
      count.textContent = count.dataset.template.replace("{shown}", shown).replace("{total}", rows.length);
    }
    // Keep the address and the language links in step with the filters, so a switch keeps them.
    var params = new URLSearchParams(window.location.search);
    [["q", search.value.trim()], ["provider", provider.value], ["mode", mode.value]].forEach(function (pair) {
      if (pair[1]) { params.set(pair[0], pair[1]); } else { params.delete(pair[0]); }
    });
    params.delete("lang");
    var query = params.toString();
    history.replaceState(null, "", window.location.pathname + (query ? "?" + query : ""));
    document.querySelectorAll(".langswitch a[data-lang]").forEach(function (link) {
      var withLang = new URLSearchParams(params);
      withLang.set("lang", link.dataset.lang);
      link.setAttribute("href", window.location.pathname + "?" + withLang.toString());
    });
  }
  [search, provider, mode].forEach(function (input) {
    input.addEventListener("input", apply);
    input.addEventListener("change", apply);
  });
}

document.addEventListener("DOMContentLoaded", function () {
  setUpCopyButtons();
  setUpModelFilter();
});
