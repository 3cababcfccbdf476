// The dashboard's live figures. The page opens the console's WebSocket (/admin/ws: the API's
// WebSocket, signed in by the console's cookie), subscribes to the "dashboard" topic, and after
// each push fetches the figures again as the server draws them and puts them in place. Without
// this script the page still shows the figures as they were when it was opened.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var state = document.getElementById("live-state");
  if (!live || !window.WebSocket) {
    return;
  }
  var fetching = false;
  var again = false;
  var retry = 1000;

  function refresh() {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    // A redirect means the session ended (to the sign-in page): never put that page here.
    fetch(live.getAttribute("data-source"), { credentials: "same-origin", redirect: "error" })
      .then(function (answer) {
        if (!answer.ok) {
          throw new Error("status " + answer.status);
        }
        return answer.text();
      })
      .then(function (html) {
        live.innerHTML = html;
      })
      .catch(function () {
        state.textContent = "The figures could not be fetched (has your session ended?): reload the page.";
      })
      .then(function () {
        fetching = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/admin/ws");
    socket.onopen = function () {
      retry = 1000;
      socket.send(JSON.stringify({ type: "subscribe", topics: ["dashboard"] }));
    };
    socket.onmessage = function (message) {
      var data = JSON.parse(message.data);
      if (data.type === "subscribed") {
        state.textContent = "Live: the figures update as sales are made.";
        live.setAttribute("data-live", "yes");
        refresh();
      } else if (data.type === "event" && data.topic === "dashboard") {
        refresh();
      }
    };
    socket.onclose = function () {
      live.setAttribute("data-live", "no");
      state.textContent = "Reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  connect();
})();
