/**
 * What the extension tells the kernel about the notebook document: its `%%task` cells
 * (JupyterLab cell id and source, in notebook order), and the code of the commands.
 *
 * Pure, no DOM (tested with jest). The kernel defines its task cells from what the
 * document holds before a command runs, so a freshly opened notebook, an edited but
 * not executed cell, or a partial Run All still run the notebook as it reads.
 */

/** A cell as the document holds it. */
export interface IDocumentCell {
  id: string;
  type: string;
  source: string;
}

/** A `%%task` cell sent to the kernel. */
export interface ITaskCell {
  id: string;
  source: string;
}

/** Whether a cell's source is a `%%task` cell (its first line starts the magic). */
export function isTaskSource(source: string): boolean {
  return /^%%task(\s|$)/.test(source);
}

/** The task cells of a document, in notebook order. */
export function taskCells(cells: Iterable<IDocumentCell>): ITaskCell[] {
  const out: ITaskCell[] = [];
  for (const cell of cells) {
    if (cell.type === 'code' && isTaskSource(cell.source)) {
      out.push({ id: cell.id, source: cell.source });
    }
  }
  return out;
}

/** Base64 of the UTF-8 JSON of `value`: a Python string literal with no escaping. */
export function encode(value: unknown): string {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** The inverse of `encode` (what the kernel does, for the tests). */
export function decode(text: string): unknown {
  const binary = atob(text);
  const bytes = Uint8Array.from(binary, c => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

const LOAD = 'get_ipython().extension_manager.load_extension("nbflow")';

/** The code of a command: load the magics quietly (no "already loaded" output), then
 * run one `%flow` line. */
export function magicCode(line: string): string {
  return `${LOAD};\n%flow ${line}`;
}

/**
 * Run silently just before a command: hands the kernel the document's task cells,
 * which the command's `%flow` line defines first (its errors show in the command's
 * output, and its code stays one readable line).
 */
export function documentCode(cells: ITaskCell[]): string {
  return `${LOAD};\n__import__("nbflow.jupyter.magics", fromlist=["use_document"]).use_document(get_ipython(), "${encode(cells)}")`;
}

/**
 * Run silently when the page connects to a kernel: the kernel sends the latest state
 * of these cells again (from its own runs, or from the run history after a restart).
 */
export function connectCode(cells: ITaskCell[]): string {
  const ids = cells.map(c => c.id);
  return `__import__("nbflow.jupyter.lab", fromlist=["resend"]).resend(get_ipython(), "${encode(ids)}")`;
}
