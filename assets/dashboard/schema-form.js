// A form generated from a JSON schema of the kind MCP elicitation asks with: an object of flat fields
// (string, with enum / oneOf / format; number and integer; boolean; array of enum choices). Anything else
// falls back to one JSON text field, so every question can be answered.
window.nfltrSchemaForm = (() => {
  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs))
      if (v !== undefined && v !== false) e.setAttribute(k, v === true ? '' : v);
    for (const kid of kids) e.append(kid);
    return e;
  };
  const flat = (p) =>
    p &&
    (['string', 'number', 'integer', 'boolean'].includes(p.type) ||
      (p.type === 'array' && p.items && (Array.isArray(p.items.enum) || Array.isArray(p.items.anyOf))));
  const choicesOf = (p) =>
    Array.isArray(p.oneOf)
      ? p.oneOf.map((o) => [o.const, o.title ?? String(o.const)])
      : Array.isArray(p.anyOf)
        ? p.anyOf.map((o) => [o.const, o.title ?? String(o.const)])
        : Array.isArray(p.enum)
          ? p.enum.map((v, i) => [v, p.enumNames?.[i] ?? String(v)])
          : undefined;

  function field(name, p, required) {
    const id = `f-${name}`;
    const wrap = el('div', { class: 'field', 'data-field': name });
    wrap.append(el('label', { for: id }, `${p.title || name}${required ? ' *' : ''}`));
    if (p.description) wrap.append(el('div', { class: 'hint' }, p.description));
    const choices = p.type === 'array' ? choicesOf(p.items) : choicesOf(p);
    if (p.type === 'boolean') {
      wrap.append(el('input', { id, name, type: 'checkbox', checked: p.default === true }));
    } else if (p.type === 'array') {
      for (const [v, label] of choices) {
        const box = el('input', {
          type: 'checkbox',
          name,
          value: JSON.stringify(v),
          checked: (p.default || []).includes(v),
        });
        wrap.append(el('label', { class: 'choice' }, box, ` ${label}`));
      }
    } else if (choices) {
      const sel = el('select', { id, name, required });
      if (!required) sel.append(el('option', { value: '' }, '—'));
      for (const [v, label] of choices)
        sel.append(el('option', { value: JSON.stringify(v), selected: p.default === v }, label));
      wrap.append(sel);
    } else if (p.type === 'number' || p.type === 'integer') {
      wrap.append(
        el('input', {
          id,
          name,
          type: 'number',
          required,
          min: p.minimum,
          max: p.maximum,
          step: p.type === 'integer' ? '1' : 'any',
          value: p.default,
        }),
      );
    } else {
      const type =
        { email: 'email', uri: 'url', date: 'date', 'date-time': 'datetime-local' }[p.format] || 'text';
      wrap.append(
        el('input', {
          id,
          name,
          type,
          required,
          minlength: p.minLength,
          maxlength: p.maxLength,
          pattern: p.pattern,
          value: p.default,
        }),
      );
    }
    return wrap;
  }

  /** Fills `form` for `schema`; `onAnswer(content)` gets the typed answer object. */
  function render(form, schema, onAnswer) {
    form.replaceChildren();
    const props = schema && schema.type === 'object' && schema.properties;
    const simple = props && Object.values(props).every(flat);
    const required = new Set(schema?.required || []);
    if (simple)
      for (const [name, p] of Object.entries(props)) form.append(field(name, p, required.has(name)));
    else {
      form.append(
        el(
          'div',
          { class: 'field', 'data-field': '_json' },
          el('label', { for: 'f-_json' }, 'Answer (JSON)'),
          el(
            'div',
            { class: 'hint' },
            schema ? `schema: ${JSON.stringify(schema).slice(0, 300)}` : 'no schema given',
          ),
          el('textarea', { id: 'f-_json', name: '_json', rows: '4', required: true }, '{}'),
        ),
      );
    }
    form.append(el('button', { type: 'submit', id: 'd-submit' }, 'Send answer'));
    form.onsubmit = (ev) => {
      ev.preventDefault();
      if (!simple) {
        try {
          return onAnswer(JSON.parse(form.elements._json.value));
        } catch (err) {
          form.elements._json.setCustomValidity(`not JSON: ${err.message}`);
          return form.reportValidity();
        }
      }
      const content = {};
      for (const [name, p] of Object.entries(props)) {
        if (p.type === 'boolean') content[name] = form.querySelector(`[name="${name}"]`).checked;
        else if (p.type === 'array')
          content[name] = [...form.querySelectorAll(`[name="${name}"]:checked`)].map((b) =>
            JSON.parse(b.value),
          );
        else {
          const v = form.querySelector(`[name="${name}"]`).value;
          if (v === '') continue;
          if (form.querySelector(`select[name="${name}"]`)) content[name] = JSON.parse(v);
          else content[name] = p.type === 'number' || p.type === 'integer' ? Number(v) : v;
        }
      }
      onAnswer(content);
    };
  }
  return { render };
})();
