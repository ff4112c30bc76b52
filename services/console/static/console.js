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

  // Someone reading elsewhere (the evaluation, below the transcript on a phone) is not pulled back:
  // the page follows the audio only while the turn it last highlighted is in view.
  function inView(el) {
    var box = el.getBoundingClientRect();
    return box.bottom > document.querySelector(".player").getBoundingClientRect().bottom && box.top < window.innerHeight;
  }

  function update() {
    var turn = turnAt(audio.currentTime);
    if (turn === current) return;
    var following = !current || inView(current);
    if (current) { current.classList.remove("current"); current.removeAttribute("aria-current"); }
    current = turn;
    if (turn) {
      turn.classList.add("current");
      turn.setAttribute("aria-current", "true");
      if (!audio.paused && following) turn.scrollIntoView({ block: "nearest" });
    }
  }

  // Our own controls (the native ones reflow inside when the audio loads): play/pause, position, time.
  var controls = document.querySelector(".player .controls");
  var play = document.getElementById("play");
  var position = document.getElementById("position");
  var clock = document.getElementById("clock");
  var total = clock.textContent.split(" / ")[1];
  function mmss(t) { t = Math.max(0, Math.floor(t)); var s = t % 60; return Math.floor(t / 60) + ":" + (s < 10 ? "0" : "") + s; }
  controls.hidden = false;
  play.addEventListener("click", function () { if (audio.paused) { var p = audio.play(); if (p && p.catch) p.catch(function () {}); } else audio.pause(); });
  // Before the first play nothing is loaded (preload="none") and no time event comes: show the move here.
  position.addEventListener("input", function () { audio.currentTime = parseFloat(position.value); tick(); update(); });
  // Arrow keys jump 5 s (the slider's own step is 1 s: minutes of calls would take hundreds of presses).
  position.addEventListener("keydown", function (event) {
    var jump = { ArrowRight: 5, ArrowUp: 5, ArrowLeft: -5, ArrowDown: -5 }[event.key];
    if (!jump) return;
    event.preventDefault();
    audio.currentTime = Math.min(Math.max(0, audio.currentTime + jump), isFinite(audio.duration) ? audio.duration : parseFloat(position.max));
    tick();
    update();
  });
  // The source is a console route that redirects to a signed link; the player keeps asking that link
  // for ranges, and it expires. On an error, ask the route for a fresh one once, where playing was.
  var source = audio.getAttribute("src"), retried = 0, failure = document.getElementById("player-error");
  audio.addEventListener("error", function () {
    if (Date.now() - retried < 10000) { failure.hidden = false; return; }
    retried = Date.now();
    var at = audio.currentTime, playing = !audio.paused;
    audio.addEventListener("loadedmetadata", function resume() {
      audio.removeEventListener("loadedmetadata", resume);
      audio.currentTime = at;
    });
    audio.src = source;
    if (playing) { var p = audio.play(); if (p && p.catch) p.catch(function () {}); }
  });
  audio.addEventListener("loadeddata", function () { failure.hidden = true; });
  // The label says what a press does; no aria-pressed as well ("Pause, pressed" would read as paused).
  audio.addEventListener("play", function () { play.textContent = "Pause"; });
  audio.addEventListener("pause", function () { play.textContent = "Play"; });
  audio.addEventListener("loadedmetadata", function () { if (isFinite(audio.duration)) { position.max = audio.duration; total = mmss(audio.duration); } });
  function tick() {
    position.value = audio.currentTime;
    clock.textContent = mmss(audio.currentTime) + " / " + total;
    position.setAttribute("aria-valuetext", mmss(audio.currentTime) + " of " + total);
  }

  ["timeupdate", "seeked", "loadedmetadata"].forEach(function (name) { audio.addEventListener(name, update); audio.addEventListener(name, tick); });
  document.getElementById("transcript").addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.seek") : null;
    if (!button) return;
    audio.currentTime = parseFloat(button.getAttribute("data-t"));
    update();
    var played = audio.play();
    if (played && played.catch) played.catch(function () {});
  });
})();
