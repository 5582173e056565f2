import { A3sError } from "../../errors.js";

/**
 * The error for a compressed stream that ends before its end marker: a cut
 * download or copy is the usual cause, so it says so plainly instead of
 * passing on a decoder's message ("unexpected end of file").
 */
export function truncatedStream(name: string, subject: string, bytes: number, cause?: unknown): A3sError {
  return new A3sError("ECORRUPT", `${subject}: truncated ${name} stream: the data ends after ${bytes} bytes, before the stream's end`, {
    subject,
    hint: "the file was cut short (an interrupted download or copy); get it again",
    ...(cause === undefined ? {} : { cause }),
  });
}
