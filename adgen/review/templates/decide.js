(() => {
  // adgen review: post decisions to the server, show what it stored. Nothing is kept in the
  // browser: a reload shows the stored decisions (the reviewer's name rides in the URL).
  const name = document.getElementById('reviewer');
  const status = document.getElementById('save-status');
  const bulkComment = document.getElementById('bulk-comment');
  const cards = new Map();
  document.querySelectorAll('article.variant').forEach((card) => {
    if (card.querySelector('textarea')) cards.set(card.dataset.variant, card);  // has files
  });
  const shownCards = () => Array.from(cards.values()).filter((card) => card.checkVisibility());
  const say = (text, bad) => {
    status.textContent = text;
    status.classList.toggle('bad', Boolean(bad));
  };
  const recountShown = () => {
    const n = shownCards().length;
    document.querySelectorAll('[data-shown]').forEach((el) => { el.textContent = String(n); });
    document.querySelectorAll('button[data-bulk]').forEach((b) => { b.disabled = n === 0; });
  };
  name.addEventListener('change', () => {
    const url = new URL(window.location.href);
    const value = name.value.trim();
    if (value) url.searchParams.set('reviewer', value); else url.searchParams.delete('reviewer');
    window.history.replaceState(null, '', url);
  });
  const show = (card, state) => {
    card.dataset.decision = state.state;
    card.querySelector('[data-label]').textContent = state.label;
    card.querySelector('[data-by]').textContent = state.by;
    const comment = card.querySelector('[data-comment]');
    comment.textContent = state.comment;
    comment.hidden = !state.comment;
    const note = card.querySelector('[data-note]');
    note.textContent = state.note;
    note.hidden = !state.note;
    card.querySelector('textarea').value = '';  // saved: it shows above
  };
  const send = async (items) => {
    if (!name.value.trim()) {
      say('Name yourself first: type your name in the Reviewer field.', true);
      name.focus();
      return;
    }
    if (items.length === 0) return;
    say('Saving…');
    let response;
    try {
      response = await fetch('decisions', {
        method: 'POST', cache: 'no-store', credentials: 'same-origin',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({reviewer: name.value, decisions: items}),
      });
    } catch (error) {
      say('Not saved: the review server cannot be reached (is `adgen review` still running?).', true);
      return;
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      say('Not saved: ' + (body.error || 'the server answered ' + response.status), true);
      return;
    }
    Object.entries(body.states).forEach(([id, state]) => {
      const card = cards.get(id);
      if (card) show(card, state);
    });
    Object.entries(body.counts).forEach(([state, n]) => {
      const el = document.querySelector('[data-count="' + state + '"]');
      if (el) el.textContent = String(n);
    });
    say('Saved ' + body.saved + ' decision' + (body.saved === 1 ? '' : 's') + ' as ' + body.reviewer + '.');
    document.dispatchEvent(new Event('adgen:decided'));  // the filters apply again
    recountShown();
  };
  const item = (card, decision, comment) => ({
    variant_id: card.dataset.variant, decision, content: card.dataset.content,
    comment: comment === undefined ? card.querySelector('textarea').value : comment,
  });
  cards.forEach((card) => {
    card.querySelectorAll('button[data-decision]').forEach((button) => {
      button.addEventListener('click', () => send([item(card, button.dataset.decision)]));
    });
  });
  document.querySelectorAll('button[data-bulk]').forEach((button) => {
    button.addEventListener('click', () => {
      const comment = bulkComment.value.trim() ? bulkComment.value : undefined;
      send(shownCards().map((card) => item(card, button.dataset.bulk, comment)));
    });
  });
  document.querySelector('nav.toolbar').addEventListener('change', recountShown);
  recountShown();
})();
