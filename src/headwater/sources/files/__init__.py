"""Files and spreadsheets as sources: CSV (files, globs, URLs), Excel workbooks and Google Sheets,
cleaned by the rules each table declares (`headwater.clean`)."""

from headwater.sources.files.base import FileSource
from headwater.sources.files.csv import CsvFileSource
from headwater.sources.files.excel import ExcelFileSource
from headwater.sources.files.sheets import GoogleSheetsFileSource

__all__ = ["CsvFileSource", "ExcelFileSource", "FileSource", "GoogleSheetsFileSource"]
