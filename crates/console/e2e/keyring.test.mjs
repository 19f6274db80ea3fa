// The shared matching table (../testdata/keyring-cases.json) run against the console's JavaScript port of
// kubelet's keyring and of reference normalisation. tests/keyring_table.rs runs the same rows against the Rust
// crates. Exits non-zero with every failing row listed.

import { readFileSync } from 'node:fs';
import { Keyring, isDefaultRegistryMatch, normalizeKey, urlsMatch } from '../assets/js/keyring.js';
import { parseNormalized } from '../assets/js/reference.js';

const table = JSON.parse(readFileSync(new URL('../testdata/keyring-cases.json', import.meta.url), 'utf8'));
const failures = [];
let checked = 0;
const expect = (what, got, want) => {
  checked++;
  if (JSON.stringify(got) !== JSON.stringify(want)) failures.push(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
};

for (const [glob, target, want] of table.urlsMatch) expect(`urlsMatch(${glob}, ${target})`, urlsMatch(glob, target), want);
for (const [key, want] of table.normalizeKey) {
  let got;
  try {
    got = normalizeKey(key);
  } catch {
    got = null;
  }
  expect(`normalizeKey(${key})`, got, want);
}
for (const [image, want] of table.defaultRegistryMatch) expect(`isDefaultRegistryMatch(${image})`, isDefaultRegistryMatch(image), want);
for (const c of table.lookup) {
  const k = new Keyring();
  for (const s of c.secrets) k.add(s.name, s.keys);
  const name = parseNormalized(c.image).name;
  expect(`lookup(${c.image}) with ${JSON.stringify(c.secrets)}`, k.lookup(name).map((m) => [m.origin, m.key]), c.want);
}
for (const [input, want] of table.references) {
  let got;
  try {
    got = parseNormalized(input).name;
  } catch {
    got = null;
  }
  expect(`parseNormalized(${JSON.stringify(input)})`, got, want);
}

if (failures.length) {
  console.error(`keyring table: ${failures.length} of ${checked} rows failed:\n  ${failures.join('\n  ')}`);
  process.exit(1);
}
console.log(`keyring table: ${checked} rows agree`);
