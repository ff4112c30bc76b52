// The call page's player: highlight the turn being spoken, and seek when a turn's time is chosen.
(function () {
  "use strict";
  var audio = document.getElementById("player");
  var turns = Array.prototype.slice.call(document.querySelectorAll("#transcript .turn[data-t]"));
  if (!audio || !turns.length) return;
  var times = turns.map(function (el) { return parseFloat(el.getAttribute("data-t")); });
  var current = null;

  function turnAt(t) {
    var found = -1;
    for (var i = 0; i < times.length; i++) { if (times[i] <= t + 0.05 && (found < 0 || times[i] >= times[found])) found = i; }
    return found < 0 ? null : turns[found];
  }

  function update() {
    var turn = turnAt(audio.currentTime);
    if (turn === current) return;
    if (current) { current.classList.remove("current"); current.removeAttribute("aria-current"); }
    current = turn;
    if (turn) {
      turn.classList.add("current");
      turn.setAttribute("aria-current", "true");
      if (!audio.paused) turn.scrollIntoView({ block: "nearest" });
    }
  }

  ["timeupdate", "seeked", "loadedmetadata"].forEach(function (name) { audio.addEventListener(name, update); });
  document.getElementById("transcript").addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.seek") : null;
    if (!button) return;
    audio.currentTime = parseFloat(button.getAttribute("data-t"));
    update();
    var played = audio.play();
    if (played && played.catch) played.catch(function () {});
  });
})();
