; Hearth for Windows: an Inno Setup 6 script around the PyInstaller bundle.
;
; On Windows, from the repository root (with Python 3.11+, Hearth's dependencies and
; pyinstaller installed, and Inno Setup 6's ISCC.exe on PATH):
;
;   py -m PyInstaller --noconfirm --clean --distpath dist --workpath build\pyinstaller installer\hearth.spec
;   iscc /DAppVersion=0.1.0 installer\windows\hearth.iss
;
; gives dist\hearth-0.1.0-windows-x64-setup.exe. It installs dist\hearth\ (hearth.exe, the
; windowed app; hearth-cli.exe, the same with a console, for `hearth-cli --self-test` and the
; subcommands) for the current user (no admin rights, the default) or for all users (the
; setup asks; /ALLUSERS or /CURRENTUSER on the command line), adds a Start menu entry, an
; optional desktop icon, opens .gguf files with Hearth (Explorer's "Open" passes the file as
; "%1"; a second file goes to the running window), and registers an uninstaller in
; Settings > Apps. tests/test_installers.py parses this file for those entries.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define ProgId "Hearth.GGUF"

[Setup]
AppId={{A14726A3-AC5C-4C55-8193-67AA3FF2A128}
AppName=Hearth
AppVersion={#AppVersion}
AppPublisher=Hearth developers
AppComments=Run large language models on your own machine
DefaultDirName={autopf}\Hearth
DefaultGroupName=Hearth
DisableProgramGroupPage=yes
; Per-user by default (no UAC prompt); the setup offers "install for all users" as well.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog commandline
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=hearth-{#AppVersion}-windows-x64-setup
SetupIconFile=..\..\resources\icons\hearth.ico
UninstallDisplayIcon={app}\hearth.exe
UninstallDisplayName=Hearth
Uninstallable=yes
ChangesAssociations=yes
Compression=lzma2
SolidCompression=yes
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "associate"; Description: "Open .gguf model files with Hearth"; GroupDescription: "File types:"

[Files]
Source: "..\..\dist\hearth\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Hearth"; Filename: "{app}\hearth.exe"; Comment: "Run large language models on your own machine"
Name: "{autodesktop}\Hearth"; Filename: "{app}\hearth.exe"; Tasks: desktopicon

[Registry]
; HKA is HKEY_CURRENT_USER for a per-user install and HKEY_LOCAL_MACHINE for all users.
Root: HKA; Subkey: "Software\Classes\.gguf"; ValueType: string; ValueName: ""; ValueData: "{#ProgId}"; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\.gguf"; ValueType: string; ValueName: "Content Type"; ValueData: "application/x-gguf"; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\.gguf\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\{#ProgId}"; ValueType: string; ValueName: ""; ValueData: "GGUF language model"; Flags: uninsdeletekey; Tasks: associate
Root: HKA; Subkey: "Software\Classes\{#ProgId}\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\hearth.exe,0"; Tasks: associate
Root: HKA; Subkey: "Software\Classes\{#ProgId}\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\hearth.exe"" ""%1"""; Tasks: associate
; "Open with" lists Hearth for .gguf files even when the association task is not chosen.
Root: HKA; Subkey: "Software\Classes\Applications\hearth.exe\SupportedTypes"; ValueType: string; ValueName: ".gguf"; ValueData: ""; Flags: uninsdeletekey

[Run]
Filename: "{app}\hearth.exe"; Description: "{cm:LaunchProgram,Hearth}"; Flags: nowait postinstall skipifsilent
