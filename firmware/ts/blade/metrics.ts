// A small metrics registry rendered in the Prometheus text exposition format (version
// 0.0.4), served read-only by the blade daemon. Gauges are read from callbacks at scrape
// time so that components export their state without pushing it.

export type MetricType = 'counter' | 'gauge';
export type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: MetricType;
  samples: Map<string, { labels: Labels; value: number }>;
  collect?: () => Array<{ labels?: Labels; value: number }>;
}

const nameRe = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function labelKey(labels: Labels): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function renderLabels(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return '';
  return `{${keys.map((k) => `${k}="${escapeLabel(labels[k] as string)}"`).join(',')}}`;
}

export class MetricsRegistry {
  private readonly families = new Map<string, Family>();

  private family(name: string, help: string, type: MetricType): Family {
    if (!nameRe.test(name)) throw new Error(`metrics: bad metric name ${name}`);
    let f = this.families.get(name);
    if (!f) {
      f = { name, help, type, samples: new Map() };
      this.families.set(name, f);
    } else if (f.type !== type) {
      throw new Error(`metrics: ${name} registered as ${f.type}`);
    }
    return f;
  }

  counter(name: string, help: string): { inc(labels?: Labels, by?: number): void } {
    const f = this.family(name, help, 'counter');
    return {
      inc: (labels: Labels = {}, by = 1) => {
        const k = labelKey(labels);
        const s = f.samples.get(k);
        if (s) s.value += by;
        else f.samples.set(k, { labels, value: by });
      },
    };
  }

  gauge(name: string, help: string): { set(value: number, labels?: Labels): void } {
    const f = this.family(name, help, 'gauge');
    return {
      set: (value: number, labels: Labels = {}) => {
        f.samples.set(labelKey(labels), { labels, value });
      },
    };
  }

  /** A family whose samples are computed at each scrape. */
  collect(name: string, help: string, type: MetricType, collect: () => Array<{ labels?: Labels; value: number }>): void {
    const f = this.family(name, help, type);
    f.collect = collect;
  }

  render(): string {
    const lines: string[] = [];
    for (const f of [...this.families.values()].sort((x, y) => x.name.localeCompare(y.name))) {
      lines.push(`# HELP ${f.name} ${f.help.replace(/\n/g, ' ')}`);
      lines.push(`# TYPE ${f.name} ${f.type}`);
      const samples = f.collect ? f.collect().map((s) => ({ labels: s.labels ?? {}, value: s.value })) : [...f.samples.values()];
      for (const s of samples) lines.push(`${f.name}${renderLabels(s.labels)} ${Number.isFinite(s.value) ? s.value : 'NaN'}`);
    }
    return `${lines.join('\n')}\n`;
  }
}
