// The playground: streams a chat completion from the gateway (/v1/chat/completions) with the
// person's own playground key, exactly as an application would. Opening the page changes
// nothing: the key's token is asked for (a POST) when the first message is sent, and again
// only if the gateway no longer accepts it (another tab took a newer one).
(function () {
  "use strict";
  var root = document.getElementById("playground");
  if (!root) return;
  var token = null;
  var tokenUrl = root.getAttribute("data-token-url");
  var csrfToken = root.getAttribute("data-csrf-token");
  var endpoint = root.getAttribute("data-endpoint");
  var transcript = document.getElementById("pg-transcript");
  var status = document.getElementById("pg-status");
  var message = document.getElementById("pg-message");
  var submit = document.getElementById("pg-submit");
  var history = [];

  function bubble(role, text) {
    var empty = document.getElementById("pg-empty");
    if (empty) empty.remove();
    var item = document.createElement("div");
    item.className = "turn turn-" + role;
    var who = document.createElement("strong");
    who.textContent = role === "user" ? "You" : "Model";
    var body = document.createElement("div");
    body.className = "turn-text";
    body.textContent = text;
    item.appendChild(who);
    item.appendChild(body);
    transcript.appendChild(item);
    transcript.scrollTop = transcript.scrollHeight;
    return body;
  }

  async function fetchToken() {
    var response = await fetch(tokenUrl, {
      method: "POST",
      headers: { "X-CSRFToken": csrfToken },
      credentials: "same-origin",
    });
    var body = await response.json().catch(function () { return {}; });
    if (!response.ok) throw new Error(body.detail || "HTTP " + response.status);
    token = body.token;
  }

  function complete(request) {
    return fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
      body: JSON.stringify(request),
    });
  }

  async function send(text) {
    history.push({ role: "user", content: text });
    bubble("user", text);
    var out = bubble("assistant", "");
    var started = performance.now();
    submit.disabled = true;
    status.textContent = "Generating…";
    var request = {
      model: document.getElementById("pg-model").value,
      messages: history,
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: parseInt(document.getElementById("pg-max").value, 10) || 512,
      temperature: parseFloat(document.getElementById("pg-temp").value) || 0,
    };
    try {
      if (!token) await fetchToken();
      var response = await complete(request);
      if (response.status === 401) {
        await fetchToken();
        response = await complete(request);
      }
      if (!response.ok) {
        var problem = await response.json().catch(function () { return {}; });
        throw new Error((problem.error && problem.error.message) || "HTTP " + response.status);
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "", answer = "", usage = null;
      for (;;) {
        var part = await reader.read();
        if (part.done) break;
        buffer += decoder.decode(part.value, { stream: true });
        var events = buffer.split(/\r?\n\r?\n/);
        buffer = events.pop();
        events.forEach(function (event) {
          // Server-sent events: only `data:` lines carry the chunk; lines starting with ":"
          // are comments (keep-alive pings) and other fields are not used here.
          var data = event.split(/\r?\n/)
            .filter(function (line) { return line.indexOf("data:") === 0; })
            .map(function (line) { return line.slice(5).replace(/^ /, ""); })
            .join("\n");
          if (!data || data === "[DONE]") return;
          var chunk = JSON.parse(data);
          if (chunk.usage) usage = chunk.usage;
          (chunk.choices || []).forEach(function (choice) {
            if (choice.delta && choice.delta.content) {
              answer += choice.delta.content;
              out.textContent = answer;
            }
          });
        });
      }
      history.push({ role: "assistant", content: answer });
      var seconds = ((performance.now() - started) / 1000).toFixed(1);
      status.textContent = usage
        ? usage.prompt_tokens + " prompt + " + usage.completion_tokens + " completion tokens · " + seconds + " s"
        : seconds + " s";
    } catch (error) {
      out.textContent = "Error: " + error.message;
      out.classList.add("turn-error");
      history.pop();
      status.textContent = "";
    } finally {
      submit.disabled = false;
      // The figures under the chat (an htmx partial) follow what the message used.
      if (window.htmx) window.htmx.trigger(document.body, "quota-refresh");
    }
  }

  document.getElementById("pg-send").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = message.value.trim();
    if (!text) return;
    message.value = "";
    send(text);
  });
  message.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      document.getElementById("pg-send").requestSubmit();
    }
  });
  document.getElementById("pg-clear").addEventListener("click", function () {
    history = [];
    transcript.innerHTML = '<p class="muted" id="pg-empty">Send a message to start.</p>';
    status.textContent = "";
  });
})();
