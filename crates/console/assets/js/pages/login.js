// Log-in page: the person pastes a bearer token (admin or viewer). It is checked with one API call and kept in
// this tab's sessionStorage only; it is never put in a URL.

import { ApiError, clearToken, get, setToken } from '../api.js';
import { field, h, messageArea } from '../dom.js';

export function render({ main, onLogin }) {
  const token = h('input', { type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const messages = messageArea();
  const form = h(
    'form',
    {
      'aria-labelledby': 'login-title',
      onsubmit: async (e) => {
        e.preventDefault();
        const value = token.value.trim();
        if (!value) {
          messages.error('paste a token: the value after "token:" in admin.kubeconfig or viewer.kubeconfig in the server data directory');
          return;
        }
        setToken(value);
        try {
          await get('/api/v1/namespaces?limit=1');
          token.value = '';
          onLogin();
        } catch (err) {
          clearToken();
          messages.error(err instanceof ApiError ? err.message : String(err));
        }
      },
    },
    field('login-token', 'Token', token, 'The bearer token from admin.kubeconfig (may write) or viewer.kubeconfig (read only), in the berth server data directory. It stays in this browser tab only.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Log in')),
  );
  main.append(h('h1', { id: 'login-title' }, 'Log in to berth'), form, messages.el);
  token.focus();
  return null;
}
