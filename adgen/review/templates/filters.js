(() => {
  const segment = document.getElementById('segment-filter');
  const placement = document.getElementById('placement-filter');
  const count = document.getElementById('visible-count');
  const figures = Array.from(document.querySelectorAll('figure.asset'));
  const apply = () => {
    const s = segment.value, p = placement.value;
    document.querySelectorAll('section.segment').forEach((el) => {
      el.hidden = s !== '' && el.dataset.segment !== s;
    });
    document.querySelectorAll('article.variant').forEach((card) => {
      const any = Array.from(card.querySelectorAll('figure.asset'))
        .some((fig) => p === '' || fig.dataset.placement === p);
      card.hidden = !any;
    });
    figures.forEach((fig) => { fig.hidden = p !== '' && fig.dataset.placement !== p; });
    document.querySelectorAll('tr[data-segment]').forEach((row) => {
      row.hidden = s !== '' && row.dataset.segment !== s && row.dataset.segment !== 'all';
    });
  };
  const quality = document.getElementById('quality-filter');
  const sort = document.getElementById('quality-sort');
  const worst = {{ worst | tojson }};
  const original = new Map();
  document.querySelectorAll('article.variant').forEach((card, i) => original.set(card, i));
  const order = () => {
    const key = sort.value;
    const camel = key.replace(/_([a-z])/g, (m, c) => c.toUpperCase());
    const attr = 'q' + camel.charAt(0).toUpperCase() + camel.slice(1);
    document.querySelectorAll('div.creative').forEach((group) => {
      const cards = Array.from(group.querySelectorAll(':scope > article.variant'));
      const value = (card) => {
        const v = parseFloat(card.dataset[attr]);
        if (Number.isNaN(v)) return Infinity;
        return worst[key] === 'desc' ? -v : v;
      };
      cards.sort((a, b) => key === '' ? original.get(a) - original.get(b)
        : (value(a) - value(b)) || (original.get(a) - original.get(b)));
      cards.forEach((card) => group.appendChild(card));
    });
  };
  const decision = document.getElementById('decision-filter');  // once anyone has reviewed
  const filterCards = () => {
    const q = quality.value, d = decision ? decision.value : '';
    document.querySelectorAll('article.variant').forEach((card) => {
      if ((q !== '' && card.dataset.quality !== q)
          || (d !== '' && card.dataset.decision !== d)) card.hidden = true;
    });
  };
  const update = () => { apply(); filterCards(); order(); recount(); };
  const recount = () => {
    const shown = figures.filter((fig) => !fig.hidden && !fig.closest('[hidden]')).length;
    count.textContent = shown === figures.length
      ? figures.length + ' assets' : shown + ' of ' + figures.length + ' assets';
  };
  segment.addEventListener('change', update);
  placement.addEventListener('change', update);
  quality.addEventListener('change', update);
  sort.addEventListener('change', update);
  if (decision) decision.addEventListener('change', update);
  document.addEventListener('adgen:decided', update);  // adgen review: a decision was saved
  update();
})();
