/**
 * nbflow's JupyterLab extension: live state badges on `%%task` cells, and flow
 * commands (palette, notebook toolbar, cell context menu) that run `%flow` magics.
 *
 * Everything works without it; it only adds what needs JupyterLab itself.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  MainAreaWidget,
  showDialog
} from '@jupyterlab/apputils';
import { Cell, CodeCell } from '@jupyterlab/cells';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { CommandToolbarButton } from '@jupyterlab/ui-components';

import {
  connectCode,
  documentCode,
  isTaskSource,
  ITaskCell,
  magicCode,
  taskCells
} from './document';
import { BadgeModel, IBadge, IChannelMessage } from './model';

/** Command ids. */
export namespace CommandIDs {
  export const runFlow = 'nbflow:run-flow';
  export const rerunFailed = 'nbflow:rerun-failed';
  export const showDag = 'nbflow:show-dag';
  export const clearCache = 'nbflow:clear-cache';
}

/** The comm target the kernel opens to send cell-level states. */
export const COMM_TARGET = 'nbflow';

const TASK_CELL = 'nbflow-task-cell';
const BADGE = 'nbflow-cell-badge';
const WIDGET_MIME = 'application/vnd.jupyter.widget-view+json';
/** What ipywidgets writes where a saved widget's model is gone (a reopened notebook). */
const MODEL_NOT_FOUND = 'Error displaying widget: model not found';
/** The mark of the static picture nbflow's widget puts in its output's text/html. */
const PICTURE_MARK = 'class="nbflow-static"';

function isTaskCell(cell: Cell): boolean {
  return cell.model.type === 'code' && isTaskSource(cell.model.sharedModel.getSource());
}

/** The notebook's task cells as the document holds them, in notebook order. */
export function documentTaskCells(panel: NotebookPanel): ITaskCell[] {
  const cells = panel.content.model?.cells;
  if (!cells) {
    return [];
  }
  const all = [];
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    all.push({ id: cell.id, type: cell.type, source: cell.sharedModel.getSource() });
  }
  return taskCells(all);
}

/** Per notebook: the badge model, the comm, and the output panel of its commands. */
class NotebookBadges {
  readonly model = new BadgeModel();
  output: MainAreaWidget<OutputArea> | null = null;
  private restoredFor: string | null = null;

  constructor(readonly panel: NotebookPanel) {
    panel.sessionContext.kernelChanged.connect((_, change) => this.listen(change.newValue));
    void panel.sessionContext.ready.then(() => this.listen(panel.sessionContext.session?.kernel ?? null));
    panel.content.model?.contentChanged.connect(() => this.markTaskCells());
    panel.content.modelChanged.connect(() => this.markTaskCells());
    this.markTaskCells();
    this.watchPictures();
  }

  /**
   * A reopened notebook whose widget state was not saved: ipywidgets writes "model not
   * found" where an nbflow widget was. Show the widget's static picture instead (its
   * output's text/html fallback: the run's final state).
   */
  private watchPictures(): void {
    let queued = false;
    const observer = new MutationObserver(() => {
      if (!queued) {
        queued = true;
        requestAnimationFrame(() => {
          queued = false;
          this.showPictures();
        });
      }
    });
    observer.observe(this.panel.content.node, { childList: true, subtree: true, characterData: true });
    this.panel.disposed.connect(() => observer.disconnect());
  }

  private showPictures(): void {
    // Cheap first: ipywidgets marks its error node; most mutations are typing.
    const errors = this.panel.content.node.querySelectorAll('.jp-OutputArea-output.jupyter-widgets');
    if (![...errors].some(node => node.textContent === MODEL_NOT_FOUND)) {
      return;
    }
    for (const cell of this.panel.content.widgets) {
      if (cell.model.type !== 'code') {
        continue;
      }
      const area = (cell as CodeCell).outputArea;
      area.widgets.forEach((child, i) => {
        const node = child.node.querySelector('.jp-OutputArea-output') as HTMLElement | null;
        if (!node || node.textContent !== MODEL_NOT_FOUND || i >= area.model.length) {
          return;
        }
        const output = area.model.get(i);
        const html = output.data['text/html'];
        if (!(WIDGET_MIME in output.data) || typeof html !== 'string' || !html.includes(PICTURE_MARK)) {
          return;
        }
        const renderer = this.panel.content.rendermime.createRenderer('text/html');
        node.textContent = '';
        node.classList.add('nbflow-picture-output');
        node.appendChild(renderer.node);
        void renderer.renderModel({
          data: { 'text/html': html },
          metadata: {},
          trusted: output.trusted,
          setData: () => undefined
        });
      });
    }
  }

  private listen(kernel: Kernel.IKernelConnection | null): void {
    this.model.apply({ type: 'reset' });
    this.renderAll();
    if (!kernel) {
      return;
    }
    kernel.registerCommTarget(COMM_TARGET, (comm, open) => {
      this.receive(open.content.data as unknown as IChannelMessage);
      comm.onMsg = (msg: KernelMessage.ICommMsgMsg) =>
        this.receive(msg.content.data as unknown as IChannelMessage);
    });
    if (this.restoredFor !== kernel.id) {
      this.restoredFor = kernel.id; // kernelChanged and ready may both bring it
      void this.restore(kernel);
    }
  }

  /**
   * Ask the kernel for the latest states of this notebook's task cells (after a page
   * reload, or on reopening the notebook: from the run history). Silent: nothing shows
   * in the notebook, and nothing is asked of a notebook without task cells.
   */
  private async restore(kernel: Kernel.IKernelConnection): Promise<void> {
    await this.panel.context.ready;
    const cells = documentTaskCells(this.panel);
    if (cells.length === 0 || kernel.isDisposed) {
      return;
    }
    try {
      await kernel.requestExecute({
        code: connectCode(cells),
        silent: true,
        store_history: false,
        stop_on_error: false
      }).done;
    } catch (reason) {
      console.warn('nbflow: could not restore the task states', reason);
    }
  }

  private receive(message: IChannelMessage): void {
    if (!message || typeof message !== 'object') {
      return;
    }
    const changed = this.model.apply(message);
    if (message.type === 'reset') {
      this.renderAll();
      return;
    }
    for (const id of changed) {
      const cell = this.cell(id);
      if (cell) {
        this.render(cell, this.model.get(id));
      }
    }
  }

  cell(id: string): Cell | undefined {
    return this.panel.content.widgets.find(c => c.model.id === id);
  }

  markTaskCells(): void {
    for (const cell of this.panel.content.widgets) {
      cell.toggleClass(TASK_CELL, isTaskCell(cell));
    }
  }

  private renderAll(): void {
    for (const cell of this.panel.content.widgets) {
      this.render(cell, this.model.get(cell.model.id));
    }
  }

  private render(cell: Cell, badge: IBadge | undefined): void {
    // The badge sits at the bottom right of the cell's input: the cell toolbar of the
    // active cell takes the top right.
    const host =
      (cell.node.querySelector(':scope > .jp-Cell-inputWrapper') as HTMLElement) ?? cell.node;
    let node = host.querySelector(`:scope > .${BADGE}`) as HTMLElement | null;
    if (!badge) {
      node?.remove();
      return;
    }
    cell.addClass(TASK_CELL);
    if (!node) {
      node = document.createElement('div');
      node.addEventListener('click', () => this.reveal(cell));
      host.appendChild(node);
    }
    node.className = `${BADGE} nbflow-state-${badge.state}`;
    node.textContent = badge.text;
    node.title = badge.title;
    node.dataset.state = badge.state;
    node.dataset.task = badge.task;
  }

  /** Scroll to a failed cell's error output. */
  private reveal(cell: Cell): void {
    const badge = this.model.get(cell.model.id);
    if (!badge || (badge.state !== 'failed' && badge.state !== 'timed_out')) {
      return;
    }
    const notebook = this.panel.content;
    const index = notebook.widgets.indexOf(cell);
    notebook.activeCellIndex = index;
    void notebook.scrollToItem(index).then(() => {
      const error =
        cell.node.querySelector('[data-mime-type="application/vnd.jupyter.error"]') ??
        cell.node.querySelector('[data-mime-type="application/vnd.jupyter.stderr"]') ??
        cell.node;
      error.scrollIntoView({ block: 'center' });
    });
  }
}

/**
 * Fit the pictures in a command's panel (Show flow DAG) to the panel's height as well
 * as its width (the SVG scales with its viewBox), also when the panel is resized.
 */
function fitPictures(view: MainAreaWidget<OutputArea>): void {
  const host = view.content.node;
  const fit = () => {
    for (const svg of host.querySelectorAll<SVGSVGElement>('svg.nbflow-picture')) {
      const top = svg.getBoundingClientRect().top - host.getBoundingClientRect().top + host.scrollTop;
      svg.style.maxHeight = `${Math.max(120, host.clientHeight - top - 12)}px`;
    }
  };
  fit();
  requestAnimationFrame(fit); // outputs may still be rendering
  if (!host.dataset.nbflowFit) {
    host.dataset.nbflowFit = 'yes';
    const observer = new ResizeObserver(fit);
    observer.observe(host);
    view.disposed.connect(() => observer.disconnect());
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-nbflow:plugin',
  description: 'Live nbflow task states on %%task cells, and flow commands.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null
  ) => {
    const byPanel = new WeakMap<NotebookPanel, NotebookBadges>();
    const attach = (panel: NotebookPanel) => {
      byPanel.set(panel, new NotebookBadges(panel));
      const items: [string, string][] = [
        ['nbflow-run-flow', CommandIDs.runFlow],
        ['nbflow-rerun-failed', CommandIDs.rerunFailed]
      ];
      for (const [name, id] of items) {
        const button = new CommandToolbarButton({ commands: app.commands, id });
        panel.toolbar.insertAfter('cellType', name, button);
      }
    };
    tracker.widgetAdded.connect((_, panel) => attach(panel));
    tracker.forEach(attach);

    /** Run `%flow <line>` in the current notebook's kernel; outputs in a side panel. */
    const runMagic = async (line: string, title: string): Promise<void> => {
      const panel = tracker.currentWidget;
      if (!panel) {
        return;
      }
      const badges = byPanel.get(panel) ?? new NotebookBadges(panel);
      byPanel.set(panel, badges);
      await panel.sessionContext.ready;
      let view = badges.output;
      if (!view || view.isDisposed) {
        const area = new OutputArea({
          model: new OutputAreaModel({ trusted: true }),
          rendermime: panel.content.rendermime
        });
        view = new MainAreaWidget({ content: area });
        view.addClass('nbflow-output-panel');
        view.id = `nbflow-output-${panel.id}`;
        view.title.closable = true;
        app.shell.add(view, 'main', { mode: 'split-bottom', ref: panel.id });
        badges.output = view;
      }
      view.title.label = `nbflow: ${title} (${panel.title.label})`;
      view.content.model.clear();
      app.shell.activateById(panel.id);
      // The document's task cells go first (silently): the command's %flow line
      // defines them, so cells not executed yet, or edited since, count as written.
      const kernel = panel.sessionContext.session?.kernel;
      if (kernel) {
        const cells = documentTaskCells(panel);
        await kernel.requestExecute({ code: documentCode(cells), silent: true, store_history: false })
          .done;
      }
      await OutputArea.execute(magicCode(line), view.content, panel.sessionContext);
      fitPictures(view);
    };

    /** Each command runs one `%flow` line; `confirm` asks first; `keys` binds a shortcut. */
    const commands: {
      id: string;
      label: string;
      caption: string;
      line: string;
      title: string;
      keys?: string[];
      confirm?: { title: string; body: string; button: string };
    }[] = [
      {
        id: CommandIDs.runFlow,
        label: 'Run flow',
        caption: 'Run every %%task cell of this notebook as one flow (%flow run)',
        line: 'run',
        title: 'run flow',
        keys: ['Alt Shift R']
      },
      {
        id: CommandIDs.rerunFailed,
        label: 'Re-run failed tasks',
        caption: 'Re-run only the failed tasks and what depends on them (%flow retry)',
        line: 'retry',
        title: 're-run failed',
        keys: ['Alt Shift F']
      },
      {
        id: CommandIDs.showDag,
        label: 'Show flow DAG',
        caption: "Show this notebook's task graph (%flow show)",
        line: 'show',
        title: 'DAG'
      },
      {
        id: CommandIDs.clearCache,
        label: 'Clear flow cache',
        caption: "Forget this notebook's tasks and their cached results (%flow clear --cache)",
        line: 'clear --cache',
        title: 'clear cache',
        confirm: {
          title: 'Clear the flow cache?',
          body: "Every cached result of this notebook's tasks will be deleted; the next run recomputes them.",
          button: 'Clear'
        }
      }
    ];
    const selector = '.jp-Notebook .jp-Cell';
    app.contextMenu.addItem({ type: 'separator', selector, rank: 90 });
    commands.forEach((command, i) => {
      app.commands.addCommand(command.id, {
        label: command.label,
        caption: command.caption,
        isEnabled: () => tracker.currentWidget !== null,
        execute: async () => {
          if (command.confirm) {
            const answer = await showDialog({
              title: command.confirm.title,
              body: command.confirm.body,
              buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: command.confirm.button })]
            });
            if (!answer.button.accept) {
              return;
            }
          }
          await runMagic(command.line, command.title);
        }
      });
      palette?.addItem({ command: command.id, category: 'nbflow' });
      app.contextMenu.addItem({ command: command.id, selector, rank: 91 + i });
      if (command.keys) {
        app.commands.addKeyBinding({ command: command.id, keys: command.keys, selector: '.jp-Notebook' });
      }
    });
  }
};

export default plugin;
