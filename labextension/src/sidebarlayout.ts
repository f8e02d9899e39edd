/**
 * The heights of the Kubeflow sidebar's sections: sized by their content the first
 * time the sidebar is shown, as the user left them after that (kept in
 * `localStorage`), never squeezed below a usable height when one is opened or closed,
 * and given room when one is opened for the user (Deploy opens Endpoints).
 * The arithmetic is in `sectionsizes.ts`.
 */

import { AccordionPanel, Widget } from '@lumino/widgets';

import { fitSections, giveRoom, ISavedSections, MIN_SECTION_PX, restoreSections } from './sectionsizes';

const STORAGE_KEY = 'kfjupyter:sidebar-sections';
/** Set once the user dragged a section's edge: their sizes are kept, not the content's. */
const SIZED_KEY = 'kfjupyter:sidebar-sized';

/** The natural height of a section's content (its root's children, not the root's min-height). */
function contentHeight(widget: Widget): number {
  const root = widget.node.firstElementChild as HTMLElement | null;
  if (!root || widget.isHidden) {
    return 0;
  }
  let height = 0;
  for (const child of Array.from(root.children)) {
    height += (child as HTMLElement).offsetHeight;
  }
  return height + 12;
}

function readSaved(): unknown {
  try {
    return JSON.parse(window.localStorage.getItem(STORAGE_KEY) || 'null');
  } catch {
    return null;
  }
}

export class SectionSizer {
  constructor(private readonly _accordion: AccordionPanel) {
    _accordion.expansionToggled.connect(this._onToggled, this);
    _accordion.handleMoved.connect(() => {
      this._userSized = true; // from now on the user's sizes win over the content's
      try {
        window.localStorage.setItem(SIZED_KEY, '1');
      } catch {
        // not remembered
      }
      this._save();
    }, this);
    // Until the user sizes the sections, they follow their content (a list loaded, a
    // study started): sized again a moment after the panels have drawn something new.
    this._content = new MutationObserver(() => {
      if (!this._laidOut || this._userSized || this._refit !== null) {
        return;
      }
      this._refit = window.setTimeout(() => {
        this._refit = null;
        if (!this._userSized) {
          this._apply(this._layout());
        }
      }, 300);
    });
    this._content.observe(_accordion.node, { childList: true, subtree: true });
    // Sized once the sidebar first has a height (it may start hidden) and its panels
    // have had a moment to render what they list.
    this._observer = new ResizeObserver(() => {
      if (!this._laidOut && this._height() > 0) {
        this._laidOut = true;
        window.setTimeout(() => this._firstLayout(), 400);
      }
    });
    this._observer.observe(_accordion.node);
  }

  /** Open section `index` for the user, with room to use it. */
  show(index: number): void {
    const widget = this._accordion.widgets[index];
    if (!widget) {
      return;
    }
    this._quiet = true;
    try {
      this._accordion.expand(index);
    } finally {
      this._quiet = false;
    }
    this._room = { index, share: 0.45 };
    this._apply(this._layout());
    this._save();
  }

  dispose(): void {
    this._observer.disconnect();
    this._content.disconnect();
  }

  private _firstLayout(): void {
    const widgets = this._accordion.widgets;
    const saved = restoreSections(
      readSaved(),
      widgets.map(w => w.id)
    );
    if (saved) {
      this._quiet = true;
      try {
        saved.open.forEach((open, i) => (open ? this._accordion.expand(i) : this._accordion.collapse(i)));
      } finally {
        this._quiet = false;
      }
      let sized = false;
      try {
        sized = window.localStorage.getItem(SIZED_KEY) === '1';
      } catch {
        sized = false;
      }
      if (sized && saved.sizes.some(s => s > 0)) {
        this._userSized = true;
        // what the user left, with every open section kept usable
        const total = this._height();
        const sum = saved.sizes.reduce((a, b) => a + b, 0) || 1;
        const scaled = saved.sizes.map(s => (s * total) / sum);
        const tooSmall = scaled.some((s, i) => saved.open[i] && s < Math.min(MIN_SECTION_PX, total / widgets.length));
        this._apply(tooSmall ? this._fitted() : scaled);
        return;
      }
    }
    this._apply(this._layout());
  }

  /** Sizes by content, with room for the section opened last for (or by) the user. */
  private _layout(): number[] {
    const sizes = this._fitted();
    const room = this._room;
    return room && sizes[room.index] > 0 ? giveRoom(sizes, room.index, room.share) : sizes;
  }

  /** Sizes by content for the sections open now. */
  private _fitted(): number[] {
    const widgets = this._accordion.widgets;
    return fitSections(
      widgets.map(contentHeight),
      widgets.map(w => !w.isHidden),
      this._height()
    );
  }

  private _onToggled(_: AccordionPanel, index: number): void {
    if (this._quiet) {
      return;
    }
    // Lumino gives an opened section its last size (0 px if it never had one) and a
    // closed one's height to its neighbour: size by content again, and give the one
    // just opened room.
    const opened = !this._accordion.widgets[index].isHidden;
    if (opened) {
      this._room = { index, share: 0.35 };
    } else if (this._room?.index === index) {
      this._room = null;
    }
    this._apply(this._layout());
    this._save();
  }

  /** The height for the sections' contents (the sidebar less the section titles). */
  private _height(): number {
    const titles = this._accordion.titles.reduce((sum, t) => sum + t.offsetHeight, 0);
    const gaps = this._accordion.spacing * Math.max(0, this._accordion.widgets.length - 1);
    return Math.max(0, this._accordion.node.clientHeight - titles - gaps);
  }

  private _apply(sizes: number[]): void {
    if (sizes.some(s => s > 0)) {
      this._accordion.setRelativeSizes(sizes);
    }
  }

  private _save(): void {
    const widgets = this._accordion.widgets;
    const relative = this._accordion.relativeSizes();
    const saved: ISavedSections = {};
    widgets.forEach((w, i) => {
      if (w.id) {
        saved[w.id] = { open: !w.isHidden, size: relative[i] ?? 0 };
      }
    });
    try {
      window.localStorage.setItem(STORAGE_KEY, JSON.stringify(saved));
    } catch {
      // private mode or full storage: the sizes are simply not remembered
    }
  }

  private _laidOut = false;
  private _userSized = false;
  private _room: { index: number; share: number } | null = null;
  private _refit: number | null = null;
  private _content: MutationObserver;
  private _quiet = false;
  private _observer: ResizeObserver;
}
