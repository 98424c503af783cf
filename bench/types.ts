export interface BenchOptions {
  /** CI's quick mode: proves the benchmark runs, with small counts. */
  quick: boolean;
}

export interface BenchResult {
  name: string;
  ours: number | null;
  anchor: number | null;
  higherIsBetter: boolean;
  /**
   * Required ratio ours/anchor (higherIsBetter) or anchor/ours, e.g. 20 for "20x faster"; null
   * where the issue asks only to report the figure.
   */
  target: number | null;
  anchorCommand: string;
  /** Why a figure is missing, when it is. */
  note?: string;
}
