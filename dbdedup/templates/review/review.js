// dbdedup review: keyboard shortcuts and the side-by-side comparison. Every action is a plain
// form or link of the page; the keys only press them.
"use strict";

(function () {
  var members = [];
  var selected = 0;

  function figures() { return Array.prototype.slice.call(document.querySelectorAll("figure.member")); }

  function select(i) {
    if (!members.length) { return; }
    selected = (i + members.length) % members.length;
    members.forEach(function (f, n) { f.classList.toggle("selected", n === selected); });
    members[selected].scrollIntoView({block: "nearest"});
  }

  function press(key) {
    var figure = members[selected];
    var form = figure && figure.querySelector('form[data-key="' + key + '"]');
    if (form) { form.requestSubmit(); }
  }

  function overlay(id, open) {
    var el = document.getElementById(id);
    if (el) { el.hidden = !open; }
    return el;
  }

  function compare() {
    var keeper = document.querySelector('figure.member[data-keeper="yes"]');
    var member = members[selected];
    if (!keeper || !member) { return; }
    document.getElementById("compare-keeper").src = keeper.dataset.large;
    document.getElementById("compare-keeper-name").textContent = "keeper: " + keeper.dataset.name;
    document.getElementById("compare-member").src = member.dataset.large;
    document.getElementById("compare-member-name").textContent = member.dataset.number + ": " + member.dataset.name;
    overlay("compare", true);
  }

  function go(name) {
    var url = document.body.dataset[name];
    if (url) { window.location.href = url; }
  }

  document.addEventListener("DOMContentLoaded", function () {
    members = figures();
    var first = members.findIndex(function (f) { return f.dataset.keeper !== "yes"; });
    select(first < 0 ? 0 : first);
    members.forEach(function (f, n) {
      f.addEventListener("click", function () { select(n); });
      var thumb = f.querySelector("button.thumb");
      if (thumb) { thumb.addEventListener("click", function () { select(n); compare(); }); }
    });
    var help = document.getElementById("help-link");
    if (help) { help.addEventListener("click", function (e) { e.preventDefault(); overlay("help", true); }); }
    document.querySelectorAll(".overlay").forEach(function (el) {
      el.addEventListener("click", function (e) { if (e.target === el) { el.hidden = true; } });
    });
  });

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (e.target.matches && e.target.matches("input, textarea, select")) {
      if (e.key === "Escape") { e.target.blur(); }
      return;
    }
    var handled = true;
    switch (e.key) {
      case "j": go("next"); break;
      case "k": go("previous"); break;
      case "l": case "ArrowRight": select(selected + 1); break;
      case "h": case "ArrowLeft": select(selected - 1); break;
      case "n": press("n"); break;
      case "x": press("x"); break;
      case "K": press("K"); break;
      case "u": press("u"); break;
      case "c": case " ": compare(); break;
      case "a": go("apply"); break;
      case "d":
        var field = document.getElementById("missed-path");
        if (field) { field.focus(); }
        break;
      case "?": overlay("help", true); break;
      case "Escape": overlay("compare", false); overlay("help", false); break;
      default:
        if (e.key >= "1" && e.key <= "9" && Number(e.key) <= members.length) { select(Number(e.key) - 1); }
        else { handled = false; }
    }
    if (handled) { e.preventDefault(); }
  });
}());
