; Inno Setup script: MedPLIB Studio's PyInstaller folder as a per-user Windows installer (.exe).
;   iscc /DSourceDir=build\dist\medplib-studio /DOutputDir=build installers\windows\medplib-studio.iss
[Setup]
AppName=MedPLIB Studio
AppVersion=0.1.0
AppPublisher=MedPLIB Studio
DefaultDirName={localappdata}\Programs\MedPLIB Studio
DefaultGroupName=MedPLIB Studio
PrivilegesRequired=lowest
OutputDir={#OutputDir}
OutputBaseFilename=MedPLIB-Studio-Setup
Compression=lzma2/max
SolidCompression=yes
ArchitecturesInstallIn64BitMode=x64compatible
UninstallDisplayIcon={app}\medplib-studio.exe

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: recursesubdirs ignoreversion

[Icons]
Name: "{group}\MedPLIB Studio"; Filename: "{app}\medplib-studio.exe"; Parameters: "gui"
Name: "{userdesktop}\MedPLIB Studio"; Filename: "{app}\medplib-studio.exe"; Parameters: "gui"; Tasks: desktopicon

[Tasks]
Name: desktopicon; Description: "Create a desktop shortcut"; Flags: unchecked

[Run]
Filename: "{app}\medplib-studio.exe"; Parameters: "gui --sample"; Description: "Open MedPLIB Studio on a sample CT"; Flags: nowait postinstall skipifsilent
