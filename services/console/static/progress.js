// Forms whose answer waits on the analytics engine (Athena on AWS takes seconds): while the next page
// is on its way, say so and count the seconds, in the form's status region.
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("form[data-progress]"), function (form) {
    var status = form.querySelector(".progress");
    var button = form.querySelector("button[type=submit]");
    var timer = null;
    form.addEventListener("submit", function () {
      var started = Date.now();
      var label = form.getAttribute("data-progress");
      function show() { status.textContent = label + "… " + Math.floor((Date.now() - started) / 1000) + " s"; }
      show();
      timer = setInterval(show, 1000);
      if (button) button.setAttribute("aria-disabled", "true");
    });
    // Back to a page kept in the back/forward cache: it is not waiting any more.
    window.addEventListener("pageshow", function () {
      if (timer) clearInterval(timer);
      status.textContent = "";
      if (button) button.removeAttribute("aria-disabled");
    });
  });
})();
