// scimledger console: small enhancements; every page works without them.
"use strict";
document.addEventListener("keydown", (event) => {
  // "/" focuses the page's search field, unless the user is typing somewhere
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
  const active = document.activeElement;
  if (active && (active.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName))) return;
  const search = document.querySelector("[data-search]");
  if (search) { event.preventDefault(); search.focus(); search.select(); }
});
document.addEventListener("DOMContentLoaded", () => {
  // a "copy" button after each request id and hash
  if (!navigator.clipboard) return;
  for (const code of document.querySelectorAll("code[data-copy]")) {
    const text = code.textContent.trim();
    if (!text) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "copy";
    button.setAttribute("aria-label", "Copy " + text);
    button.addEventListener("click", () => {
      navigator.clipboard.writeText(text).then(() => { button.textContent = "copied"; });
    });
    code.after(button);
  }
});
