// What commands print: results on stdout (lines or one JSON document), never logs.

export interface Output {
  line(text: string): void;
  json(value: unknown): void;
}

export const stdout: Output = {
  line: (text) => void process.stdout.write(text + '\n'),
  json: (value) => void process.stdout.write(JSON.stringify(value, null, 2) + '\n'),
};
