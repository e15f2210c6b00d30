"""Documents as a worker reads them: PDF, Word, HTML, markdown and text, parsed into sections that keep their
page and heading, inside a child process with a time and memory budget."""
