// A YAML rendering of JSON values for the "YAML preview" (block style, two-space indent). Strings that YAML could
// read as something else are double-quoted with JSON escapes, which YAML accepts verbatim.

const PLAIN = /^[A-Za-z0-9_./][A-Za-z0-9_./ :@=+-]*$/;
const SPECIAL = /^(true|false|yes|no|on|off|null|~|y|n)$/i;
const NUMERIC = /^[-+]?(\.?[0-9]|0x|0o)/;

function scalar(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const s = String(v);
  if (s === '' || !PLAIN.test(s) || SPECIAL.test(s) || NUMERIC.test(s) || s.endsWith(' ') || s.includes(': ') || s.endsWith(':')) {
    return JSON.stringify(s);
  }
  return s;
}

function isCollection(v) {
  return v !== null && typeof v === 'object' && (Array.isArray(v) ? v.length > 0 : Object.keys(v).length > 0);
}

function emptyCollection(v) {
  return Array.isArray(v) ? '[]' : '{}';
}

function lines(v, indent) {
  const pad = ' '.repeat(indent);
  const out = [];
  if (Array.isArray(v)) {
    for (const item of v) {
      if (isCollection(item)) {
        const inner = lines(item, indent + 2);
        out.push(`${pad}- ${inner[0].trimStart()}`, ...inner.slice(1));
      } else {
        out.push(`${pad}- ${typeof item === 'object' && item !== null ? emptyCollection(item) : scalar(item)}`);
      }
    }
  } else {
    for (const [k, item] of Object.entries(v)) {
      if (isCollection(item)) {
        out.push(`${pad}${scalar(k)}:`, ...lines(item, Array.isArray(item) ? indent : indent + 2));
      } else {
        out.push(`${pad}${scalar(k)}: ${typeof item === 'object' && item !== null ? emptyCollection(item) : scalar(item)}`);
      }
    }
  }
  return out;
}

export function toYaml(value) {
  if (!isCollection(value)) return `${scalar(value)}\n`;
  return `${lines(value, 0).join('\n')}\n`;
}
