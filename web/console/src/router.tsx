// A small history router: the console answers every UI path with index.html.
import { AnchorHTMLAttributes, MouseEvent, useEffect, useState } from 'react';

type Guard = () => string | undefined;
let guard: Guard | undefined;

/** While set, leaving the page asks first (unsaved editor changes). */
export function setNavigationGuard(g: Guard | undefined): void {
  guard = g;
}

export function navigate(path: string, replace = false): void {
  if (path === location.pathname + location.search) return;
  const warning = guard?.();
  if (warning && !confirm(warning)) return;
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  window.dispatchEvent(new PopStateEvent('popstate'));
}

export function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const on = () => setPath(location.pathname);
    window.addEventListener('popstate', on);
    return () => window.removeEventListener('popstate', on);
  }, []);
  return path;
}

export function Link(props: AnchorHTMLAttributes<HTMLAnchorElement> & { to: string }) {
  const { to, onClick, ...rest } = props;
  return (
    <a
      {...rest}
      href={to}
      onClick={(e: MouseEvent<HTMLAnchorElement>) => {
        onClick?.(e);
        if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
        e.preventDefault();
        navigate(to);
      }}
    />
  );
}
