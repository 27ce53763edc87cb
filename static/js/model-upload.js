// Resumable upload of a ModelCar archive through the REST API (the protocol every client
// uses): the file is sent in chunks with Content-Range; after a dropped connection the client
// asks the server how much arrived and resumes there. Choosing the same file again (same name
// and size) resumes an interrupted upload.
(function () {
  "use strict";
  const root = document.getElementById("modelcar-upload");
  if (!root) return;
  const input = document.getElementById("modelcar-file");
  const start = document.getElementById("modelcar-start");
  const bar = document.getElementById("modelcar-progress");
  const status = document.getElementById("modelcar-status");
  const panel = root.querySelector(".upload-progress");
  const csrf = root.dataset.csrf;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function show(text, received, size) {
    panel.hidden = false;
    status.textContent = text;
    if (size) bar.value = Math.floor((100 * received) / size);
  }

  async function json(response) {
    try { return await response.json(); } catch (e) { return {}; }
  }

  async function askOffset(url) {
    const response = await fetch(url, { headers: { "X-CSRFToken": csrf }, credentials: "same-origin" });
    if (!response.ok) throw new Error("The server does not know this upload any more.");
    return (await json(response)).received_bytes;
  }

  async function upload(file) {
    const created = await fetch(root.dataset.createUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ filename: file.name, size_bytes: file.size }),
    });
    const session = await json(created);
    if (!created.ok) throw new Error(session.detail || "The upload could not start.");
    let offset = session.received_bytes;
    const chunk = session.chunk_bytes;
    let failures = 0;
    while (offset < file.size) {
      const end = Math.min(offset + chunk, file.size);
      show(`Sending ${Math.round(offset / 1048576)} of ${Math.round(file.size / 1048576)} MB…`, offset, file.size);
      let response;
      try {
        response = await fetch(session.url, {
          method: "PUT", credentials: "same-origin",
          headers: { "Content-Range": `bytes ${offset}-${end - 1}/${file.size}`, "Content-Type": "application/octet-stream", "X-CSRFToken": csrf },
          body: file.slice(offset, end),
        });
      } catch (networkError) {
        failures += 1;
        show(`Connection lost; resuming (attempt ${failures})…`, offset, file.size);
        await sleep(Math.min(30000, 1000 * 2 ** Math.min(failures, 5)));
        try { offset = await askOffset(session.url); } catch (e) { /* still offline: retry */ }
        continue;
      }
      const body = await json(response);
      if (response.status === 409 && typeof body.received_bytes === "number") { offset = body.received_bytes; continue; }
      if (!response.ok) throw new Error(body.detail || `The server refused the chunk (${response.status}).`);
      offset = body.received_bytes;
      failures = 0;
    }
    show("All bytes arrived; handing over to the registry push…", file.size, file.size);
    const done = await fetch(session.complete_url, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrf } });
    const result = await json(done);
    if (!done.ok) throw new Error(result.detail || "The upload could not be completed.");
    window.location.assign(root.dataset.nextUrl);
  }

  start.addEventListener("click", async () => {
    const file = input.files[0];
    if (!file) { show("Choose the archive first."); return; }
    start.disabled = true;
    input.disabled = true;
    try {
      await upload(file);
    } catch (error) {
      show(error.message);
      start.disabled = false;
      input.disabled = false;
    }
  });
})();
