declare module 'parse-prometheus-text-format' {
  /** A metric family as the parser gives it (prom2json's shape): every figure is the text's string. */
  export interface MetricFamily {
    name: string;
    help: string;
    type: string;
    metrics: Array<{
      labels?: Record<string, string>;
      value?: string;
      buckets?: Record<string, string>;
      quantiles?: Record<string, string>;
      count?: string;
      sum?: string;
    }>;
  }
  export default function parsePrometheusTextFormat(text: string): MetricFamily[];
}
