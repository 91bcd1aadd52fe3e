/** Display helpers shared by the pages. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function seconds(s: number): string {
  if (!Number.isFinite(s)) return '–';
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m}:${String(Math.floor(s % 60)).padStart(2, '0')}`;
}

export function ago(t: number, now = Date.now()): string {
  const s = Math.max(0, (now - t) / 1000);
  if (s < 1) return 'now';
  if (s < 60) return `${Math.floor(s)} s ago`;
  return `${Math.floor(s / 60)} min ago`;
}

/** JSON error bodies look like {error:{code,message}}; anything else is shown as text. */
export async function errorText(res: Response): Promise<string> {
  const text = await res.text();
  try {
    const j = JSON.parse(text) as { error?: { code?: string; message?: string } };
    if (j.error?.message) return `${j.error.message} (${j.error.code ?? res.status})`;
  } catch {
    /* not JSON */
  }
  return `HTTP ${res.status}: ${text.slice(0, 200)}`;
}
