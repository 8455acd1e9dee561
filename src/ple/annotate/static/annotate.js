// Keyboard shortcuts for the judging page: 1, 2 and E (or =) press the matching button.
// The texts judged never pass through this script: the server renders them, escaped.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("judge-form");
  if (!form) { return; }
  var sent = false;
  form.addEventListener("submit", function (event) {
    if (sent) { event.preventDefault(); return; }  // one judgment per page
    sent = true;
    form.classList.add("sent");
  });
  var keys = { "1": "choose-1", "2": "choose-2", "e": "choose-equal", "=": "choose-equal" };
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) { return; }
    var id = keys[event.key.toLowerCase()];
    if (!id) { return; }
    event.preventDefault();
    var button = document.getElementById(id);
    button.classList.add("pressed");
    button.click();
  });
  document.documentElement.dataset.keys = "ready";  // tests wait for this before typing
});
